package pricefile

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParse(t *testing.T) {
	const src = `
provider: openai
source: "https://openai.com/api/pricing, checked 2026-11-01"
models:
  - model: gpt-4o
    aliases: [gpt-4o-2024-08-06, chatgpt-4o-latest]
    prices:
      - effective: 2024-10-01          # unquoted date and numbers are read as written
        input: 2.50
        cached_input: "1.25"
        output: "10.00"
        tiers:
          batch: {input: "1.25", output: "5.00"}
          priority: {input: "4.25", cached_input: "2.125", output: "17.00", reasoning: "18"}
      - effective: "2024-05-13"
        checked: 2026-12-06
        refs: [genai-prices]
        ref_note: "LiteLLM keeps current prices only"
        input: "5"
        output: "15"
  - model: claude-sonnet-4
    prices:
      - effective: 2025-05-22
        checked: 2026-12-06
        refs: [litellm, genai-prices]
        input: "3"
        cached_input: "0.30"
        cache_write: "3.75"
        cache_write_1h: "6"
        output: "15"
        tiers:
          batch: {input: "1.50", cached_input: "0.15", cache_write: "1.875", output: "7.50"}
`
	got, err := Parse("openai.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := File{
		Name:     "openai.yaml",
		Provider: "openai",
		Source:   "https://openai.com/api/pricing, checked 2026-11-01",
		Models: []Model{{
			Name:    "gpt-4o",
			Aliases: []string{"gpt-4o-2024-08-06", "chatgpt-4o-latest"},
			Prices: []Price{{ // sorted oldest first
				Effective: date("2024-05-13"),
				Standard:  Rates{Input: 5e6, CachedInput: 5e6, CacheWrite: 5e6, CacheWrite1h: 5e6, Output: 15e6, Reasoning: 15e6},
				Checked:   date("2026-12-06"), Refs: []string{"genai-prices"}, RefNote: "LiteLLM keeps current prices only",
			}, {
				Effective: date("2024-10-01"),
				Standard:  Rates{Input: 2_500_000, CachedInput: 1_250_000, CacheWrite: 2_500_000, CacheWrite1h: 2_500_000, Output: 10e6, Reasoning: 10e6},
				Tiers: map[string]Rates{
					// Partial override: cached_input comes from the row; cache writes default to
					// the tier's input; reasoning to the tier's output.
					"batch":    {Input: 1_250_000, CachedInput: 1_250_000, CacheWrite: 1_250_000, CacheWrite1h: 1_250_000, Output: 5e6, Reasoning: 5e6},
					"priority": {Input: 4_250_000, CachedInput: 2_125_000, CacheWrite: 4_250_000, CacheWrite1h: 4_250_000, Output: 17e6, Reasoning: 18e6},
				},
			}},
		}, {
			Name: "claude-sonnet-4",
			Prices: []Price{{
				Effective: date("2025-05-22"),
				Standard:  Rates{Input: 3e6, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6e6, Output: 15e6, Reasoning: 15e6},
				Checked:   date("2026-12-06"), Refs: []string{"litellm", "genai-prices"},
				Tiers: map[string]Rates{
					// cache_write_1h is inherited from the row, not defaulted to the tier's
					// cache_write: a tier that does not mention a price does not change it.
					"batch": {Input: 1_500_000, CachedInput: 150_000, CacheWrite: 1_875_000, CacheWrite1h: 6e6, Output: 7_500_000, Reasoning: 7_500_000},
				},
			}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "provider: openai\nmodels:\n  - model: gpt-4o\n    prices:\n"
	const row = "      - effective: 2024-10-01\n"
	for _, tt := range []struct {
		name, src, want string
	}{
		{"provider missing", "models:\n  - model: m\n    prices:\n" + row + `        input: "1"` + "\n" + `        output: "1"`,
			`openai.yaml: provider: missing`},
		{"models missing", "provider: openai\n",
			`openai.yaml: models: missing`},
		{"model missing", "provider: openai\nmodels:\n  - prices:\n" + row + `        input: "1"` + "\n" + `        output: "1"`,
			`openai.yaml: model #1: model: missing`},
		{"empty alias", "provider: openai\nmodels:\n  - model: m\n    aliases: [a, '']\n    prices:\n" + row + `        input: "1"` + "\n" + `        output: "1"`,
			`openai.yaml: model "m": alias #2: empty`},
		{"prices missing", "provider: openai\nmodels:\n  - model: gpt-4o\n",
			`openai.yaml: model "gpt-4o": prices: missing`},
		{"effective missing", head + `      - input: "1"` + "\n" + `        output: "1"`,
			`openai.yaml: model "gpt-4o" price #1: effective: missing`},
		{"effective not a date", head + `      - effective: 2024-13-01` + "\n" + `        input: "1"` + "\n" + `        output: "1"`,
			`openai.yaml: model "gpt-4o" price #1: effective "2024-13-01": not a date (want YYYY-MM-DD)`},
		{"input missing", head + row + `        output: "10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: input: missing`},
		{"input null", head + row + "        input:\n" + `        output: "10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: input: missing`},
		{"output missing", head + row + `        input: "1"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: output: missing`},
		{"not a decimal", head + row + `        input: "2.5x"` + "\n" + `        output: "10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: input "2.5x": not a decimal`},
		{"unquoted exponent", head + row + `        input: 1e-6` + "\n" + `        output: "10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: input "1e-6": not a decimal`},
		{"map instead of decimal", head + row + `        input: {a: 1}` + "\n" + `        output: "10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: input "{a: 1}": not a decimal`},
		{"negative", head + row + `        input: "1"` + "\n" + `        output: "-10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: output "-10": negative`},
		{"too precise", head + row + `        input: "1"` + "\n" + `        cached_input: "0.0000001"` + "\n" + `        output: "10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: cached_input "0.0000001": more than 6 decimals`},
		{"too high", head + row + `        input: "1"` + "\n" + `        output: "10"` + "\n" + `        reasoning: "5000.01"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: reasoning "5000.01": above 5000 USD per 1M tokens`},
		{"bad cache_write", head + row + `        input: "1"` + "\n" + `        output: "10"` + "\n" + `        cache_write: "x"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: cache_write "x": not a decimal`},
		{"bad cache_write_1h", head + row + `        input: "1"` + "\n" + `        output: "10"` + "\n" + `        cache_write_1h: "x"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: cache_write_1h "x": not a decimal`},
		{"cached above input", head + row + `        input: "1"` + "\n" + `        cached_input: "1.5"` + "\n" + `        output: "10"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: cached_input 1.500000 above input 1.000000`},
		{"tier cached above input", head + row + `        input: "1"` + "\n" + `        cached_input: "0.5"` + "\n" + `        output: "10"` + "\n" + `        tiers: {batch: {input: "0.25"}}`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: tier batch: cached_input 0.500000 above input 0.250000`},
		{"duplicate effective", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + row + `        input: "2"` + "\n" + `        output: "2"`,
			`openai.yaml: model "gpt-4o": price effective 2024-10-01: duplicate`},
		{"unknown tier", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        tiers: {scale: {input: "1"}}`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: tier "scale": unknown (want batch, flex, priority)`},
		{"standard is not a tier", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        tiers: {standard: {input: "1"}}`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: tier "standard": unknown (want batch, flex, priority)`},
		{"bad tier price", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        tiers: {flex: {output: "-1"}}`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: tier flex: output "-1": negative`},
		{"unknown field", "provider: openai\nprovder: x\n",
			`openai.yaml: [2:1] unknown field "provder"`},
		{"unknown price field", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        cache_read: "1"`,
			`openai.yaml: [8:9] unknown field "cache_read"`},
		{"unknown tier field", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        tiers: {batch: {inptu: "1"}}`,
			`openai.yaml: [8:25] unknown field "inptu"`},
		{"duplicate key", "provider: openai\nprovider: anthropic\n",
			`openai.yaml: [2:1] mapping key "provider" already defined at [1:1]`},
		{"not yaml", "provider: [openai\n",
			`openai.yaml: [1:11] sequence end token ']' not found`},
		{"decoder panic", "provider: \nmodels:\n  - model: \n    aliases: !00\n0:00000",
			`openai.yaml: malformed YAML (decoder panicked: runtime error: invalid memory address or nil pointer dereference)`},
		{"checked not a date", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        checked: 2026-12-32` + "\n" + `        refs: [litellm]`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: checked "2026-12-32": not a date (want YYYY-MM-DD)`},
		{"checked without refs", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        checked: 2026-12-06`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: refs: missing (checked says when, refs must say against what)`},
		{"refs without checked", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        refs: [litellm]`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: checked: missing (refs are named, checked must say when)`},
		{"ref_note alone", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        ref_note: "x"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: ref_note without checked and refs`},
		{"ref named twice", head + row + `        input: "1"` + "\n" + `        output: "1"` + "\n" + `        checked: 2026-12-06` + "\n" + `        refs: [litellm, " ", litellm]`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: refs #2: empty` + "\n" +
				`openai.yaml: model "gpt-4o" price effective 2024-10-01: refs "litellm": named twice`},
		{"several problems, all reported", head + row + `        input: "x"` + "\n" + `        output: "-1"`,
			`openai.yaml: model "gpt-4o" price effective 2024-10-01: input "x": not a decimal` + "\n" +
				`openai.yaml: model "gpt-4o" price effective 2024-10-01: output "-1": negative`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("openai.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse error:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// FuzzParse checks that no input makes the decoder panic, and that whatever it accepts keeps
// File's invariants.
func FuzzParse(f *testing.F) {
	f.Add([]byte("provider: openai\nmodels:\n  - model: gpt-4o\n    aliases: [a]\n    prices:\n      - effective: 2024-10-01\n        input: \"2.50\"\n        output: \"10\"\n        tiers: {batch: {input: \"1.25\"}}\n"))
	f.Add([]byte("provider: x\nmodels: [{model: m, prices: [{effective: 2025-01-01, input: 1, output: 2, cache_write: 3}]}]"))
	f.Add([]byte("provider: &a x\nmodels: *a\n"))
	f.Add([]byte("{"))
	f.Add([]byte("provider: b\nprovider_aliases: [aws.b]\nmatch: {strip_prefixes: [us.], strip_version_suffix: true}\nmodels: [{model: m, prices: [{effective: 2025-01-01, input: 1, output: 2, tiers: {batch: {input: 0.5}}, long_context: {above: 10, input: 2, output: 4, tiers: {batch: {input: 1}}}}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Errorf("error does not name the file: %q", err)
			}
			return
		}
		if file.Provider == "" || len(file.Models) == 0 {
			t.Errorf("accepted a file without provider or models: %+v", file)
		}
		for _, m := range file.Models {
			if m.Name == "" || len(m.Prices) == 0 {
				t.Errorf("accepted model %+v", m)
			}
			for i, p := range m.Prices {
				if i > 0 && !m.Prices[i-1].Effective.Before(p.Effective) {
					t.Errorf("model %q: prices not strictly ordered", m.Name)
				}
				checkRates(t, p.Standard)
				for _, r := range p.Tiers {
					checkRates(t, r)
				}
				if lc := p.LongContext; lc != nil {
					if lc.Above < 1 || len(lc.Tiers) != len(p.Tiers) {
						t.Errorf("model %q: accepted long context %+v for tiers %v", m.Name, lc, p.Tiers)
					}
					checkRates(t, lc.Standard)
					for _, r := range lc.Tiers {
						checkRates(t, r)
					}
				}
			}
		}
	})
}

func checkRates(t *testing.T, r Rates) {
	t.Helper()
	for _, p := range []PicoUSD{r.Input, r.CachedInput, r.CacheWrite, r.CacheWrite1h, r.Output, r.Reasoning} {
		if p < 0 || p > maxPrice {
			t.Errorf("price %d out of range in %+v", p, r)
		}
	}
	if r.CachedInput > r.Input {
		t.Errorf("cached_input above input in %+v", r)
	}
}
