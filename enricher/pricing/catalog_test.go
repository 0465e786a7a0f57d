package pricing

import (
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// shippedFiles parses every file of the shipped catalogue on its own.
func shippedFiles(tb testing.TB) []pricefile.File {
	tb.Helper()
	names, err := fs.Glob(catalogFS, "catalog/*.yaml")
	if err != nil || len(names) == 0 {
		tb.Fatalf("shipped catalogue: %v (%d files)", err, len(names))
	}
	var files []pricefile.File
	for _, name := range names {
		data, err := fs.ReadFile(catalogFS, name)
		if err != nil {
			tb.Fatal(err)
		}
		f, err := pricefile.Parse(name, data)
		if err != nil {
			tb.Fatalf("shipped file does not parse: %v", err)
		}
		files = append(files, f)
	}
	return files
}

// TestShippedCatalogueResolvesEveryName prices one call of every model of every shipped file
// by its canonical name, each alias and each provider alias, in every tier its newest row
// lists, short and (where priced) long, at that row's first instant: every one must be
// priced as that model, in that tier, at a cost above zero, and every file must name its
// source and say the prices are to be re-checked.
func TestShippedCatalogueResolvesEveryName(t *testing.T) {
	files := shippedFiles(t)
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	providers := map[string]bool{}
	models := 0
	for _, f := range files {
		providers[f.Provider] = true
		if !strings.Contains(f.Source, "https://") || !strings.Contains(f.Source, "as known 20") {
			t.Errorf("%s: source %q does not give a URL and the date the prices were read", f.Name, f.Source)
		}
		for _, m := range f.Models {
			models++
			last := m.Prices[len(m.Prices)-1]
			tiers := []string{event.TierStandard}
			for tier := range last.Tiers {
				tiers = append(tiers, tier)
			}
			names := append([]string{m.Name, strings.ToUpper(m.Name), f.Provider + "/" + m.Name}, m.Aliases...)
			for _, pa := range f.ProviderAliases {
				names = append(names, pa+"/"+m.Name)
			}
			for _, name := range names {
				for _, pname := range append([]string{f.Provider}, f.ProviderAliases...) {
					for _, tier := range tiers {
						for _, long := range []bool{false, true} {
							input := int64(1000)
							suffix := "/" + tier
							if long {
								if last.LongContext == nil {
									continue
								}
								input, suffix = last.LongContext.Above+1, suffix+"/long"
							}
							q, _ := c.PriceUnits(pname, name, tier, last.Effective, event.Tokens{Input: input, Output: 10}, perUnitOnly(last), false)
							want := fmt.Sprintf("%s/%s@%s%s", f.Provider, m.Name, last.Effective.Format(time.DateOnly), suffix)
							if !q.Priced || q.Model != m.Name || q.Version != want || q.Cost <= 0 {
								t.Errorf("%s: Price(%q, %q, %q, input %d) = %+v, want model %q version %q and a cost",
									f.Name, pname, name, tier, input, q, m.Name, want)
							}
						}
					}
				}
			}
		}
	}
	for _, p := range []string{"openai", "anthropic", "google", "vertex_ai", "azure", "bedrock", "mistral", "deepseek", "xai", "groq", "cohere"} {
		if !providers[p] {
			t.Errorf("provider %s is missing from the shipped catalogue", p)
		}
	}
	if models < 400 {
		t.Errorf("the shipped catalogue has %d models, expected at least 400", models)
	}
}

// perUnitOnly returns one unit of the first unit a row prices when the row prices no token
// (DALL-E bills per image only), so that a call of its model costs something; nil otherwise.
func perUnitOnly(p pricefile.Price) event.Units {
	if p.Standard.Input > 0 || p.Standard.Output > 0 || len(p.Standard.Units) == 0 {
		return nil
	}
	return event.Units{slices.Sorted(maps.Keys(p.Standard.Units))[0]: 1}
}

// TestShippedRowsChecked requires every row of the shipped catalogue to say when it was
// compared with public references and with which: at least two, or a note saying why one.
func TestShippedRowsChecked(t *testing.T) {
	rows := 0
	for _, f := range shippedFiles(t) {
		for _, m := range f.Models {
			for _, p := range m.Prices {
				rows++
				at := fmt.Sprintf("%s: model %q price effective %s", f.Name, m.Name, p.Effective.Format(time.DateOnly))
				if p.Checked.IsZero() {
					t.Errorf("%s: no checked date", at)
				}
				if len(p.Refs) < 2 && p.RefNote == "" {
					t.Errorf("%s: refs %v: fewer than two references and no ref_note saying why", at, p.Refs)
				}
			}
		}
	}
	if rows < 400 {
		t.Errorf("the shipped catalogue has %d price rows, expected at least 400", rows)
	}
}

// TestShippedPrices pins prices of the providers added to the catalogue, worked out by hand
// from the files: each case states the arithmetic in µUSD (USD per 1M tokens × tokens).
func TestShippedPrices(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 11, 26, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name                  string
		provider, model, tier string
		at                    time.Time
		tokens                event.Tokens
		want                  Quote
	}{
		// Gemini 2.5 Pro, short: 9,000·1.25 + 1,000·0.125 + 2,000·10 = 31,375 µUSD;
		// savings 1,000·1.125.
		{"gemini short", "gemini", "models/gemini-2.5-pro", "", at, event.Tokens{Input: 10_000, CachedInput: 1000, Output: 2000, Reasoning: 1500},
			Quote{true, "gemini-2.5-pro", "google/gemini-2.5-pro@2025-06-17/standard", 31_375_000_000, 1_125_000_000}},
		// Long: 200,001·2.50 + 2,000·15 = 530,002.5 µUSD.
		{"gemini long", "google", "gemini-2.5-pro", "", at, event.Tokens{Input: 200_001, Output: 2000},
			Quote{true, "gemini-2.5-pro", "google/gemini-2.5-pro@2025-06-17/standard/long", 530_002_500_000, 0}},
		// Long batch: 300,000·1.25 + 1,000·7.50 = 382,500 µUSD.
		{"gemini long batch", "google", "gemini-2.5-pro", "batch", at, event.Tokens{Input: 300_000, Output: 1000},
			Quote{true, "gemini-2.5-pro", "google/gemini-2.5-pro@2025-06-17/batch/long", 382_500_000_000, 0}},
		// Vertex Claude with its "@" snapshot: 1,000·3 + 1,000·15 = 18,000 µUSD.
		{"vertex claude", "vertex_ai", "claude-sonnet-4-5@20250929", "", at, event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "claude-sonnet-4-5", "vertex_ai/claude-sonnet-4-5@2025-09-29/standard", 18_000_000_000, 0}},
		{"vertex gemini path", "gcp.vertex_ai", "publishers/google/models/gemini-2.5-flash", "", at, event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "gemini-2.5-flash", "vertex_ai/gemini-2.5-flash@2025-06-17/standard", 2_800_000_000, 0}},
		// Bedrock geographic cross-region profile of a 4.5 model, 10% above global (this case
		// expected the global price until 2026-12-06, which was wrong):
		// 1,000·3.30 + 1,000·0.33 + 1,000·4.125 + 1,000·16.50 = 24,255 µUSD; savings 1,000·2.97.
		{"bedrock us. profile", "aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "", at,
			event.Tokens{Input: 3000, CachedInput: 1000, CacheWrite: 1000, Output: 1000},
			Quote{true, "anthropic.claude-sonnet-4-5", "bedrock/anthropic.claude-sonnet-4-5@2025-09-29/standard", 24_255_000_000, 2_970_000_000}},
		// The global profile: 1,000·3 + 1,000·0.30 + 1,000·3.75 + 1,000·15 = 22,050 µUSD;
		// savings 1,000·2.70.
		{"bedrock global. profile", "aws.bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "", at,
			event.Tokens{Input: 3000, CachedInput: 1000, CacheWrite: 1000, Output: 1000},
			Quote{true, "global.anthropic.claude-sonnet-4-5", "bedrock/global.anthropic.claude-sonnet-4-5@2025-09-29/standard", 22_050_000_000, 2_700_000_000}},
		// Titan Text Embeddings v1 and v2 differ: 1,000,000·0.10 and 1,000,000·0.02.
		{"titan embeddings v1", "bedrock", "amazon.titan-embed-text-v1", "", at, event.Tokens{Input: 1_000_000},
			Quote{true, "amazon.titan-embed-text-v1", "bedrock/amazon.titan-embed-text-v1@2023-09-28/standard", 100_000_000_000, 0}},
		{"titan embeddings v2", "bedrock", "amazon.titan-embed-text-v2:0", "", at, event.Tokens{Input: 1_000_000},
			Quote{true, "amazon.titan-embed-text", "bedrock/amazon.titan-embed-text@2024-04-30/standard", 20_000_000_000, 0}},
		// Nova Micro: 1,000,000·0.035 + 1,000,000·0.14 = $0.175.
		{"bedrock nova", "bedrock", "amazon.nova-micro-v1:0", "", at, event.Tokens{Input: 1_000_000, Output: 1_000_000},
			Quote{true, "amazon.nova-micro", "bedrock/amazon.nova-micro@2024-12-03/standard", 175_000_000_000, 0}},
		{"azure batch", "azure_openai", "gpt-4o-2024-08-06", "batch", at, event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "gpt-4o", "azure/gpt-4o@2024-10-01/batch", 6_250_000_000, 0}},
		// Mistral's YYMM version is an alias: 1,000·2 + 1,000·6 = 8,000 µUSD.
		{"mistral alias", "mistralai", "mistral-large-2411", "", at, event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "mistral-large", "mistral/mistral-large@2024-09-17/standard", 8_000_000_000, 0}},
		// DeepSeek across its price changes: 1,000 misses + 1,000 hits + 1,000 output.
		{"deepseek launch promotion", "deepseek", "deepseek-chat", "", time.Date(2025, 2, 8, 23, 59, 59, 0, time.UTC),
			event.Tokens{Input: 2000, CachedInput: 1000, Output: 1000}, Quote{true, "deepseek-chat", "deepseek/deepseek-chat@2024-12-26/standard", 434_000_000, 126_000_000}},
		{"deepseek before sept", "deepseek", "deepseek-chat", "", time.Date(2025, 9, 4, 23, 59, 59, 0, time.UTC),
			event.Tokens{Input: 2000, CachedInput: 1000, Output: 1000}, Quote{true, "deepseek-chat", "deepseek/deepseek-chat@2025-02-09/standard", 1_440_000_000, 200_000_000}},
		{"deepseek v3.1", "deepseek", "deepseek-chat", "", time.Date(2025, 9, 5, 0, 0, 0, 0, time.UTC),
			event.Tokens{Input: 2000, CachedInput: 1000, Output: 1000}, Quote{true, "deepseek-chat", "deepseek/deepseek-chat@2025-09-05/standard", 2_310_000_000, 490_000_000}},
		{"deepseek v3.2", "deepseek", "deepseek-reasoner", "", at,
			event.Tokens{Input: 2000, CachedInput: 1000, Output: 1000, Reasoning: 900}, Quote{true, "deepseek-reasoner", "deepseek/deepseek-reasoner@2025-09-29/standard", 728_000_000, 252_000_000}},
		// Grok 4 above 128K: 128,001·6 + 1,000·30 = 798,006 µUSD.
		{"grok long", "xai", "grok-4-0709", "", at, event.Tokens{Input: 128_001, Output: 1000},
			Quote{true, "grok-4", "xai/grok-4@2025-07-09/standard/long", 798_006_000_000, 0}},
		// Groq's price from 2025-11-11: 1,000·0.15 + 1,000·0.60 = 750 µUSD (900 until
		// 2026-12-06, when the catalogue had only the launch price, output 0.75).
		{"groq publisher path", "groq", "groq/openai/gpt-oss-120b", "", at, event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "openai/gpt-oss-120b", "groq/openai/gpt-oss-120b@2025-11-11/standard", 750_000_000, 0}},
		{"groq launch price", "groq", "openai/gpt-oss-120b", "", time.Date(2025, 11, 10, 23, 59, 59, 0, time.UTC), event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "openai/gpt-oss-120b", "groq/openai/gpt-oss-120b@2025-08-05/standard", 900_000_000, 0}},
		// Sonnet 4.5 above 200K on Anthropic's API, 1-hour cache writes included:
		// 150,001·6 + 50,000·12 + 2,000·22.50 = 1,545,006 µUSD.
		{"anthropic long", "anthropic", "claude-sonnet-4-5-20250929", "", at, event.Tokens{Input: 200_001, CacheWrite: 50_000, CacheWrite1h: 50_000, Output: 2000},
			Quote{true, "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5@2025-09-29/standard/long", 1_545_006_000_000, 0}},
		{"embedding", "openai", "text-embedding-3-small", "", at, event.Tokens{Input: 1_000_000},
			Quote{true, "text-embedding-3-small", "openai/text-embedding-3-small@2024-01-25/standard", 20_000_000_000, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Price(tt.provider, tt.model, tt.tier, tt.at, tt.tokens, false); got != tt.want {
				t.Errorf("Price(%s, %s, %q):\n got %+v\nwant %+v", tt.provider, tt.model, tt.tier, got, tt.want)
			}
		})
	}
}

// syntheticCatalog builds a catalogue of n models over 10 providers, each with three price
// rows, batch and priority tiers and an alias, to measure lookups on a catalogue larger than
// the shipped one.
func syntheticCatalog(tb testing.TB, n int) *Catalog {
	tb.Helper()
	var files []pricefile.File
	for p := 0; p < 10; p++ {
		var b strings.Builder
		fmt.Fprintf(&b, "provider: prov%d\nmatch: {strip_prefixes: [us.], strip_version_suffix: true}\nmodels:\n", p)
		for m := 0; m < n/10; m++ {
			fmt.Fprintf(&b, "  - model: model-%d-%d\n    aliases: [alias-%d-%d]\n    prices:\n", p, m, p, m)
			for y := 2023; y <= 2025; y++ {
				fmt.Fprintf(&b, "      - {effective: %d-01-01, input: \"1.%d\", cached_input: \"0.1\", output: \"4\", tiers: {batch: {input: \"0.5\"}, priority: {input: \"2\"}}}\n", y, m%10)
			}
		}
		files = append(files, parse(tb, fmt.Sprintf("p%d.yaml", p), b.String()))
	}
	c, err := New(files...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func BenchmarkPriceCatalogue(b *testing.B) {
	c := syntheticCatalog(b, 600)
	at := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, bc := range []struct{ name, provider, model, tier string }{
		{"models=600/match=exact", "prov3", "model-3-42", ""},
		{"models=600/match=alias", "PROV3", "Alias-3-42", "batch"},
		{"models=600/match=region-version-snapshot", "prov7", "us.model-7-59-20250101-v1:0", "priority"},
		{"models=600/match=none", "prov7", "unknown-model-2025-01-01", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if q := c.Price(bc.provider, bc.model, bc.tier, at, mixed, false); q.Priced != (bc.name != "models=600/match=none") {
				b.Fatalf("Price(%s) = %+v", bc.model, q)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.Price(bc.provider, bc.model, bc.tier, at, mixed, false)
			}
		})
	}
}

func TestSyntheticCatalogueDoesNotAllocate(t *testing.T) {
	c := syntheticCatalog(t, 600)
	at := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, model := range []string{"model-3-42", "prov3/alias-3-42", "us.model-7-59-20250101-v1:0", "nope"} {
		if n := testing.AllocsPerRun(100, func() { c.Price("prov3", model, "batch", at, mixed, false) }); n != 0 {
			t.Errorf("Price(%q) allocates %v times", model, n)
		}
	}
}
