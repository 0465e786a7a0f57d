package litellm

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

var opt = Options{Effective: time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC), Source: "LiteLLM fixture"}

func convertFixture(t *testing.T) Result {
	t.Helper()
	data, err := os.ReadFile("testdata/model_prices_small.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Convert(data, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestConvertFixture(t *testing.T) {
	res := convertFixture(t)
	var names []string
	for name := range res.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"anthropic.yaml", "bedrock.yaml", "deepseek.yaml", "google.yaml", "mistral.yaml", "openai.yaml", "xai.yaml"}; !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	if res.Models != 10 {
		t.Errorf("%d models, want 10", res.Models)
	}
	const openai = `# Imported from LiteLLM's model_prices_and_context_window.json by ` + "`tokenmeter pricing import litellm`" + `.
# LiteLLM states no dates: every price below takes effect on 2025-11-01. Review the prices,
# then merge the models you want into the catalogue. Format: schemas/pricefile/README.md.
provider: "openai"
source: "LiteLLM fixture"
models:
  - model: "gpt-4o"
    prices:
      - effective: 2025-11-01
        input: "2.5"
        cached_input: "1.25"
        output: "10"
        tiers:
          batch: {input: "1.25", output: "5"}
          priority: {input: "4.25", cached_input: "2.125", output: "17"}
  - model: "gpt-5-mini"
    prices:
      - effective: 2025-11-01
        input: "0.25"
        cached_input: "0.025"
        output: "2"
        reasoning: "2"
        tiers:
          flex: {input: "0.125", cached_input: "0.0125", output: "1"}
  - model: "o1-mini"
    prices:
      - effective: 2025-11-01
        input: "1.1"
        cached_input: "0.55"
        output: "4.4"
        tiers:
          batch: {input: "0.4", cached_input: "0.4", output: "2.2"}
  - model: "text-embedding-3-small"
    prices:
      - effective: 2025-11-01
        input: "0.02"
        output: "0"
`
	if got := string(res.Files["openai.yaml"]); got != openai {
		t.Errorf("openai.yaml:\n%s\nwant:\n%s", got, openai)
	}
	wantNotes := []string{
		`broken/cached-above-input: skipped: cache_read_input_token_cost (5) above input_cost_per_token (1) per 1M tokens`,
		`broken/negative: skipped: input_cost_per_token -1e-06: negative`,
		`broken/no-output: skipped: no output_cost_per_token`,
		`gemini/gemini-2.5-pro: batch prices left out: LiteLLM gives no long-context price for them`,
		`bedrock/us-east-1/anthropic.claude-3-haiku-20240307-v1:0: skipped: a region- or commitment-specific Bedrock price (the catalogue prices on-demand US East)`,
		`dall-e-3: skipped: no input_cost_per_token (mode "image_generation")`,
		`o1-mini: batch cached_input set to its input price 0.4 (LiteLLM gives none)`,
		`mistral/mistral-tiny: input_cost_per_token 2.5000000000000004e-07 rounded to 0.25 USD per 1M tokens`,
		`openai/gpt-4o: skipped: openai/gpt-4o is already imported from "gpt-4o"`,
	}
	slices.Sort(wantNotes)
	got := slices.Clone(res.Notes)
	slices.Sort(got)
	if !slices.Equal(got, wantNotes) {
		t.Errorf("notes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantNotes, "\n"))
	}
}

// TestConvertedFilesPrice loads the import as a catalogue and prices calls with it, exactly.
func TestConvertedFilesPrice(t *testing.T) {
	res := convertFixture(t)
	var files []pricefile.File
	for name, data := range res.Files {
		f, err := pricefile.Parse(name, data)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	c, err := pricing.New(files...)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 11, 2, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		provider, model, tier string
		tokens                event.Tokens
		want                  pricing.Quote
	}{
		// 200·2.50 + 1000·1.25 + 300·10 µUSD.
		{"openai", "gpt-4o-2024-08-06", "", event.Tokens{Input: 1200, CachedInput: 1000, Output: 300},
			pricing.Quote{Priced: true, Model: "gpt-4o", Version: "openai/gpt-4o@2025-11-01/standard", Cost: 4_750_000_000, Savings: 1_250_000_000}},
		// 1000·1.25 + 1000·5 µUSD.
		{"openai", "gpt-4o", "batch", event.Tokens{Input: 1000, Output: 1000},
			pricing.Quote{Priced: true, Model: "gpt-4o", Version: "openai/gpt-4o@2025-11-01/batch", Cost: 6_250_000_000}},
		// Long context: 100,001·6 + 50,000·0.60 + 50,000·7.50 + 1000·22.50 = 1,027,506 µUSD;
		// savings 50,000·(6−0.60).
		{"anthropic", "claude-sonnet-4-5-20250929", "", event.Tokens{Input: 200_001, CachedInput: 50_000, CacheWrite: 50_000, Output: 1000},
			pricing.Quote{Priced: true, Model: "claude-sonnet-4-5-20250929", Version: "anthropic/claude-sonnet-4-5-20250929@2025-11-01/standard/long",
				Cost: 1_027_506_000_000, Savings: 270_000_000_000}},
		{"google", "gemini-2.5-pro", "", event.Tokens{Input: 300_000, Output: 1000},
			pricing.Quote{Priced: true, Model: "gemini-2.5-pro", Version: "google/gemini-2.5-pro@2025-11-01/standard/long", Cost: 765_000_000_000}},
		{"bedrock", "us.anthropic.claude-3-haiku-20240307-v1:0", "", event.Tokens{Input: 1000, Output: 1000},
			pricing.Quote{Priced: true, Model: "us.anthropic.claude-3-haiku-20240307-v1:0", Version: "bedrock/us.anthropic.claude-3-haiku-20240307-v1:0@2025-11-01/standard", Cost: 1_500_000_000}},
		{"mistral", "mistral-tiny", "", event.Tokens{Input: 4, Output: 4},
			pricing.Quote{Priced: true, Model: "mistral-tiny", Version: "mistral/mistral-tiny@2025-11-01/standard", Cost: 2_000_000}},
	} {
		if got := c.Price(tt.provider, tt.model, tt.tier, at, tt.tokens, false); got != tt.want {
			t.Errorf("Price(%s, %s, %q):\n got %+v\nwant %+v", tt.provider, tt.model, tt.tier, got, tt.want)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"not json", `{`, "import litellm: decode JSON object: unexpected EOF"},
		{"not an object", `[1]`, "import litellm: decode JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage"},
		{"trailing data", `{} {}`, "import litellm: decode JSON object: data after the top-level object"},
		{"nothing priced", `{"sample_spec": {}, "x": {"litellm_provider": "openai", "mode": "chat"}}`, "import litellm: no model with an input price"},
		{"only hostile entries", `{"a": 1, "b": {"litellm_provider": "o/../x", "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
			"c": {"litellm_provider": "openai", "input_cost_per_token": "1e-6", "output_cost_per_token": 1e-6},
			"d": {"litellm_provider": "openai", "input_cost_per_token": 1e300, "output_cost_per_token": 1e-6},
			"e": {"litellm_provider": "openai", "input_cost_per_token": 1e-999999999, "output_cost_per_token": 1e-6}}`,
			"import litellm: no model with an input price"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Convert([]byte(tt.src), opt)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Convert error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
	if _, err := Convert([]byte(`{}`), Options{}); err == nil || err.Error() != "import litellm: no effective date" {
		t.Errorf("Convert without a date: %v", err)
	}
}

func TestPerMillion(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    string
		rounded bool
		err     string
	}{
		{"2.5e-06", "2.5", false, ""},
		{"0.0000025", "2.5", false, ""},
		{"1e-05", "10", false, ""},
		{"0", "0", false, ""},
		{"0.0", "0", false, ""},
		{"1.25e-12", "0.000001", true, ""}, // 0.00000125 rounds to 6 decimals
		{"3.5000000000000004e-06", "3.5", true, ""},
		{"0.005", "5000", false, ""},
		{"0.0050001", "", false, "above 5000 USD per 1M tokens"},
		{"-1e-06", "", false, "negative"},
		{"1e-06x", "", false, "not a number"},
		{strings.Repeat("1", 65), "", false, "too long for a price"},
		{"1e-999999999", "", false, "exponent out of range for a price"},
		{"1e+41", "", false, "exponent out of range for a price"},
		{"1E-6", "1", false, ""},
		{"1e+0", "", false, "above 5000 USD per 1M tokens"},
	} {
		got, rounded, err := perMillion(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("perMillion(%s) error = %v, want %s", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || rounded != tt.rounded {
			t.Errorf("perMillion(%s) = %q, %v, %v; want %q, %v", tt.in, got, rounded, err, tt.want, tt.rounded)
		}
	}
}

// FuzzConvert checks that no input panics, and that every accepted import is a set of valid
// pricing files forming a catalogue (Convert checks the latter itself; a failure of that
// check is an error the fuzzer reports here).
func FuzzConvert(f *testing.F) {
	data, err := os.ReadFile("testdata/model_prices_small.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"m": {"litellm_provider": "openai", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "input_cost_per_token_batches": 5e-7}}`))
	f.Add([]byte(`{"m": {"litellm_provider": "x", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "input_cost_per_token_above_128k_tokens": 2e-6, "input_cost_per_token_above_200k_tokens": 3e-6}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Convert(data, opt)
		if err != nil {
			if strings.Contains(err.Error(), "generated") {
				t.Fatalf("Convert produced invalid files: %v", err)
			}
			return
		}
		for name, text := range res.Files {
			if _, err := pricefile.Parse(name, text); err != nil {
				t.Fatalf("%s does not parse: %v", name, err)
			}
		}
	})
}
