package pricing

import (
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// bedrockish has the name rules of a cloud reseller: provider aliases, region prefixes,
// version suffixes, and a model whose long calls cost more.
const bedrockish = `
provider: bedrock
provider_aliases: [aws.bedrock]
match:
  strip_prefixes: [us., eu., global.]
  strip_version_suffix: true
models:
  - model: anthropic.claude-sonnet-4-5
    prices:
      - effective: 2025-01-01
        input: "3"
        cached_input: "0.30"
        cache_write: "3.75"
        output: "15"
        tiers:
          batch: {input: "1.50", cached_input: "0.15", cache_write: "1.875", output: "7.50"}
        long_context:
          above: 200000
          input: "6"
          cached_input: "0.60"
          cache_write: "7.50"
          output: "22.50"
          tiers:
            batch: {input: "3", cached_input: "0.30", cache_write: "3.75", output: "11.25"}
  - model: anthropic.claude-v2
    aliases: [anthropic.claude-v2:1]
    prices: [{effective: 2025-01-01, input: "8", output: "24"}]
  - model: amazon.nova-pro
    prices: [{effective: 2025-01-01, input: "0.80", output: "3.20"}]
  - model: us.special
    prices: [{effective: 2025-01-01, input: "1", output: "1"}]
  - model: global.amazon.nova-pro
    prices: [{effective: 2025-01-01, input: "0.72", output: "2.88"}]
`

func TestLookupRules(t *testing.T) {
	c, err := New(parse(t, "bedrock.yaml", bedrockish))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		provider, model string
		want            string // canonical model, "" for unpriced
	}{
		{"bedrock", "anthropic.claude-sonnet-4-5", "anthropic.claude-sonnet-4-5"},
		{"bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5"},
		{"bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5"},
		{"bedrock", "EU.Anthropic.Claude-Sonnet-4-5-20250929-V1:0", "anthropic.claude-sonnet-4-5"},
		{"bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1", "anthropic.claude-sonnet-4-5"},
		{"bedrock", "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5"},
		{"aws.bedrock", "aws.bedrock/anthropic.claude-sonnet-4-5:0", "anthropic.claude-sonnet-4-5"},
		{"AWS.Bedrock", "amazon.nova-pro-v1:0", "amazon.nova-pro"},
		{"bedrock", "anthropic.claude-v2:1", "anthropic.claude-v2"}, // exact alias first
		{"bedrock", "anthropic.claude-v2", "anthropic.claude-v2"},
		{"bedrock", "us.special", "us.special"}, // an exact name wins over stripping
		// A prefixed model of its own keeps its versioned and dated ids; other prefixes of
		// the same model still strip to the model.
		{"bedrock", "global.amazon.nova-pro-v1:0", "global.amazon.nova-pro"},
		{"bedrock", "global.amazon.nova-pro-20250101-v1:0", "global.amazon.nova-pro"},
		{"bedrock", "us.amazon.nova-pro-v1:0", "amazon.nova-pro"},
		{"bedrock", "special", ""},
		{"bedrock", "apac.amazon.nova-pro-v1:0", ""},     // not a listed prefix
		{"bedrock", "us.eu.amazon.nova-pro-v1:0", ""},    // one prefix only
		{"bedrock", "amazon.nova-pro-v1:0-20250101", ""}, // rules apply in their order only
		{"bedrock", "amazon.nova-pro-x1:0", ""},
		{"bedrock", "amazon.nova-pro:", ""},
		{"bedrock", "amazon.nova-pro-v:0", ""},
		{"bedrock", "us.", ""},
		{"anthropic", "anthropic.claude-sonnet-4-5", ""},
	} {
		got := c.Price(tt.provider, tt.model, "", june, event.Tokens{Input: 1}, false)
		if got.Model != tt.want || got.Priced != (tt.want != "") {
			t.Errorf("Price(%q, %q) = %+v, want model %q", tt.provider, tt.model, got, tt.want)
		}
	}
}

func TestPriceLongContext(t *testing.T) {
	c, err := New(parse(t, "bedrock.yaml", bedrockish))
	if err != nil {
		t.Fatal(err)
	}
	const m = "anthropic.claude-sonnet-4-5"
	for _, tt := range []struct {
		name   string
		tier   string
		tokens event.Tokens
		want   Quote
	}{
		// 199,000·3e6 + 1,000·3.75e6 + 1,000·15e6 (the threshold itself is not above it).
		{"at the threshold", "", event.Tokens{Input: 200_000, CacheWrite: 1000, Output: 1000},
			Quote{true, m, "bedrock/" + m + "@2025-01-01/standard", 615_750_000_000, 0}},
		// Every token of the call at long rates: 100,001·6e6 + 100,000·6e5 + 1,000·22.5e6;
		// savings 100,000·(6e6−6e5).
		{"one token above", "", event.Tokens{Input: 200_001, CachedInput: 100_000, Output: 1000},
			Quote{true, m, "bedrock/" + m + "@2025-01-01/standard/long", 682_506_000_000, 540_000_000_000}},
		// Batch above the threshold: 100,001·3e6 + 100,000·3e5 + 1,000·11.25e6; savings 100,000·2.7e6.
		{"batch above", "batch", event.Tokens{Input: 200_001, CachedInput: 100_000, Output: 1000},
			Quote{true, m, "bedrock/" + m + "@2025-01-01/batch/long", 341_253_000_000, 270_000_000_000}},
		{"batch below", "batch", event.Tokens{Input: 1000, Output: 1000},
			Quote{true, m, "bedrock/" + m + "@2025-01-01/batch", 9_000_000_000, 0}},
		// A tier the row does not price: standard long rates. 300,000·6e6.
		{"flex above", "flex", event.Tokens{Input: 300_000},
			Quote{true, m, "bedrock/" + m + "@2025-01-01/standard/long", 1_800_000_000_000, 0}},
		// 1-hour cache writes default to the long 5-minute write rate: 250,000·7.5e6.
		{"cache writes above", "", event.Tokens{Input: 250_000, CacheWrite: 250_000, CacheWrite1h: 50_000},
			Quote{true, m, "bedrock/" + m + "@2025-01-01/standard/long", 1_875_000_000_000, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Price("bedrock", m, tt.tier, june, tt.tokens, false); got != tt.want {
				t.Errorf("Price:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestNewProviderAliasErrors(t *testing.T) {
	a := parse(t, "a.yaml", `{provider: a, provider_aliases: [shared], models: [{model: m, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`)
	b := parse(t, "b.yaml", `{provider: b, provider_aliases: [Shared, a], models: [{model: m, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`)
	_, err := New(a, b)
	want := "provider \"Shared\" is priced by both a.yaml and b.yaml\nprovider \"a\" is priced by both a.yaml and b.yaml"
	if err == nil || err.Error() != want {
		t.Errorf("New error:\n got %v\nwant %s", err, want)
	}
	// A provider listing its own name as an alias is not ambiguous.
	self := parse(t, "c.yaml", `{provider: c, provider_aliases: [C], models: [{model: m, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`)
	if _, err := New(self); err != nil {
		t.Errorf("New with a self-alias: %v", err)
	}
}

func TestVersionCoversExtensions(t *testing.T) {
	base := parse(t, "b.yaml", bedrockish)
	cat := func(f pricefile.File) string {
		c, err := New(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.Version()
	}
	v := cat(base)
	for name, change := range map[string]func(*pricefile.File){
		"provider alias":   func(f *pricefile.File) { f.ProviderAliases = append(f.ProviderAliases, "x") },
		"strip prefix":     func(f *pricefile.File) { f.Match.StripPrefixes = f.Match.StripPrefixes[1:] },
		"version suffix":   func(f *pricefile.File) { f.Match.StripVersionSuffix = false },
		"long threshold":   func(f *pricefile.File) { f.Models[0].Prices[0].LongContext.Above++ },
		"long batch price": func(f *pricefile.File) { f.Models[0].Prices[0].LongContext.Tiers["batch"] = pricefile.Rates{} },
	} {
		f := parse(t, "b.yaml", bedrockish)
		change(&f)
		if cat(f) == v {
			t.Errorf("changing the %s kept the version %s", name, v)
		}
	}
}
