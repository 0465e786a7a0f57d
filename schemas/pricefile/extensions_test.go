package pricefile

import (
	"reflect"
	"testing"
)

func TestParseLongContextAndMatch(t *testing.T) {
	const src = `
provider: bedrock
provider_aliases: [aws.bedrock, AWS_Bedrock]
match:
  strip_prefixes: [US., eu.]
  strip_version_suffix: true
models:
  - model: anthropic.claude-sonnet-4-5
    prices:
      - effective: 2025-09-29
        input: "3"
        cached_input: "0.30"
        output: "15"
        tiers:
          batch: {input: "1.50", cached_input: "0.15", output: "7.50"}
        long_context:
          above: 200000
          input: "6"
          cached_input: "0.60"
          output: "22.50"
          tiers:
            batch: {input: "3", output: "11.25"}
`
	got, err := Parse("bedrock.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := File{
		Name: "bedrock.yaml", Provider: "bedrock", ProviderAliases: []string{"aws.bedrock", "AWS_Bedrock"},
		Match: Match{StripPrefixes: []string{"us.", "eu."}, StripVersionSuffix: true},
		Models: []Model{{
			Name: "anthropic.claude-sonnet-4-5",
			Prices: []Price{{
				Effective: date("2025-09-29"),
				Standard:  Rates{Input: 3e6, CachedInput: 300_000, CacheWrite: 3e6, CacheWrite1h: 3e6, Output: 15e6, Reasoning: 15e6},
				Tiers: map[string]Rates{
					"batch": {Input: 1_500_000, CachedInput: 150_000, CacheWrite: 1_500_000, CacheWrite1h: 1_500_000, Output: 7_500_000, Reasoning: 7_500_000},
				},
				LongContext: &LongContext{
					Above:    200_000,
					Standard: Rates{Input: 6e6, CachedInput: 600_000, CacheWrite: 6e6, CacheWrite1h: 6e6, Output: 22_500_000, Reasoning: 22_500_000},
					// The long batch tier inherits cached_input from the long-context block,
					// not from the row's batch tier.
					Tiers: map[string]Rates{
						"batch": {Input: 3e6, CachedInput: 600_000, CacheWrite: 3e6, CacheWrite1h: 3e6, Output: 11_250_000, Reasoning: 11_250_000},
					},
				},
			}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse:\n got %+v\nwant %+v", got, want)
	}

	p := &got.Models[0].Prices[0]
	for _, tt := range []struct {
		tier  string
		input int64
		want  PicoUSD // input rate
	}{
		{"", 200_000, 3e6}, // at the threshold: not above it
		{"", 200_001, 6e6}, // one token above: the whole call is long
		{"batch", 200_000, 1_500_000},
		{"batch", 200_001, 3e6},
		{"flex", 200_001, 6e6}, // a tier the row does not price: standard (long) rates
		{"priority", 10, 3e6},
	} {
		if got := p.RatesFor(tt.tier, tt.input).Input; got != tt.want {
			t.Errorf("RatesFor(%q, %d).Input = %d, want %d", tt.tier, tt.input, got, tt.want)
		}
	}
}

func TestParseLongContextErrors(t *testing.T) {
	const head = "provider: p\nmodels:\n  - model: m\n    prices:\n      - effective: 2025-01-01\n        input: \"1\"\n        output: \"2\"\n"
	for _, tt := range []struct{ name, src, want string }{
		{"above missing", head + "        long_context: {input: \"2\", output: \"4\"}\n",
			`p.yaml: model "m" price effective 2025-01-01: long_context: above: missing`},
		{"above not a count", head + "        long_context: {above: 2e5, input: \"2\", output: \"4\"}\n",
			`p.yaml: model "m" price effective 2025-01-01: long_context: above "2e5": not a token count from 1 to 100000000`},
		{"above zero", head + "        long_context: {above: 0, input: \"2\", output: \"4\"}\n",
			`p.yaml: model "m" price effective 2025-01-01: long_context: above "0": not a token count from 1 to 100000000`},
		{"above too high", head + "        long_context: {above: 200000000, input: \"2\", output: \"4\"}\n",
			`p.yaml: model "m" price effective 2025-01-01: long_context: above "200000000": not a token count from 1 to 100000000`},
		{"rates missing", head + "        long_context: {above: 10}\n",
			"p.yaml: model \"m\" price effective 2025-01-01: long_context: input: missing\n" +
				"p.yaml: model \"m\" price effective 2025-01-01: long_context: output: missing"},
		{"bad price", head + "        long_context: {above: 10, input: \"2x\", output: \"4\"}\n",
			`p.yaml: model "m" price effective 2025-01-01: long_context: input "2x": not a decimal`},
		{"tier the row lacks", head + "        long_context: {above: 10, input: \"2\", output: \"4\", tiers: {batch: {input: \"1\"}}}\n",
			`p.yaml: model "m" price effective 2025-01-01: long_context: tier "batch": the row does not price this tier`},
		{"tier of the row missing", head + "        tiers: {flex: {input: \"0.5\"}}\n        long_context: {above: 10, input: \"2\", output: \"4\"}\n",
			`p.yaml: model "m" price effective 2025-01-01: long_context: tier flex: missing (the row prices flex, so a long flex call needs its price too)`},
		{"long context inside a tier", head + "        tiers: {flex: {input: \"0.5\", long_context: {above: 1}}}\n",
			"p.yaml: [8:38] unknown field \"long_context\""},
		{"empty provider alias", "provider: p\nprovider_aliases: [\"\"]\nmodels: [{model: m, prices: [{effective: 2025-01-01, input: 1, output: 1}]}]\n",
			`p.yaml: provider_aliases #1: empty`},
		{"empty strip prefix", "provider: p\nmatch: {strip_prefixes: [\"\"]}\nmodels: [{model: m, prices: [{effective: 2025-01-01, input: 1, output: 1}]}]\n",
			`p.yaml: match: strip_prefixes #1: empty`},
		{"unknown match field", "provider: p\nmatch: {strip: [x]}\nmodels: [{model: m, prices: [{effective: 2025-01-01, input: 1, output: 1}]}]\n",
			"p.yaml: [2:9] unknown field \"strip\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.src))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}
