package pricefile

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseOverrides(t *testing.T) {
	const src = `
organisation: acme-corp
source: "MSA with OpenAI, 2025-07"
discounts:
  - {provider: openai, percent: "0", effective: 2026-07-01}
  - {provider: openai, percent: 10, effective: 2025-07-01}
  - {provider: openai, model: gpt-4o, percent: "12.25", effective: 2025-07-01}
models:
  - provider: openai
    model: ft:gpt-4o-mini:acme::b1
    aliases: [acme-support-bot]
    prices:
      - {effective: 2025-01-01, input: "0.30", output: "1.20"}
deployments:
  - {provider: azure, name: prod-gpt4o-eastus, model: gpt-4o}
`
	got, err := ParseOverrides("acme.overrides.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Overrides{
		Name: "acme.overrides.yaml", Organisation: "acme-corp", Source: "MSA with OpenAI, 2025-07",
		Discounts: []Discount{ // by effective date, stable
			{Provider: "openai", Effective: date("2025-07-01"), Percent: "10", BasisPoints: 1000},
			{Provider: "openai", Model: "gpt-4o", Effective: date("2025-07-01"), Percent: "12.25", BasisPoints: 1225},
			{Provider: "openai", Effective: date("2026-07-01"), Percent: "0", BasisPoints: 0},
		},
		Models: []ProviderModel{{Provider: "openai", Model: Model{
			Name: "ft:gpt-4o-mini:acme::b1", Aliases: []string{"acme-support-bot"},
			Prices: []Price{{Effective: date("2025-01-01"),
				Standard: Rates{Input: 300_000, CachedInput: 300_000, CacheWrite: 300_000, CacheWrite1h: 300_000, Output: 1_200_000, Reasoning: 1_200_000}}},
		}}},
		Deployments: []Deployment{{Provider: "azure", Name: "prod-gpt4o-eastus", Model: "gpt-4o"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseOverrides:\n got %+v\nwant %+v", got, want)
	}
}

func TestApplyDiscount(t *testing.T) {
	for _, tt := range []struct {
		price PicoUSD
		bp    int64
		want  PicoUSD
	}{
		{2_500_000, 1000, 2_250_000}, // $2.50 less 10%
		{2_500_000, 1225, 2_193_750}, // less 12.25%
		{2_500_000, 0, 2_500_000},    // no discount
		{2_500_000, 10_000, 0},       // free
		{1, 5000, 1},                 // 0.5 pico rounds half up
		{1, 5001, 0},                 // 0.4999 rounds down
		{3, 3333, 2},                 // 2.0001
		{maxPrice, 1, 4_999_500_000}, // the largest price, no overflow
	} {
		if got := Apply(tt.price, tt.bp); got != tt.want {
			t.Errorf("Apply(%d, %d bp) = %d, want %d", tt.price, tt.bp, got, tt.want)
		}
	}
}

func TestParseOverridesErrors(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"empty", "organisation: x\n", "o.yaml: no discounts, models or deployments"},
		{"not yaml", "discounts: [", "o.yaml: "},
		{"discount fields missing", "discounts: [{model: m}]",
			"o.yaml: discount #1: provider: missing\no.yaml: discount #1: effective: missing\no.yaml: discount #1: percent: missing"},
		{"bad percent", `discounts: [{provider: p, percent: "101", effective: 2025-01-01}]`,
			`o.yaml: discount #1: percent "101": not a percentage from 0 to 100 with at most 2 decimals`},
		{"too precise percent", `discounts: [{provider: p, percent: "10.125", effective: 2025-01-01}]`,
			`o.yaml: discount #1: percent "10.125": not a percentage from 0 to 100 with at most 2 decimals`},
		{"negative percent", `discounts: [{provider: p, percent: "-5", effective: 2025-01-01}]`,
			`o.yaml: discount #1: percent "-5": not a percentage from 0 to 100 with at most 2 decimals`},
		{"bad date", `discounts: [{provider: p, percent: "5", effective: 2025-13-01}]`,
			`o.yaml: discount #1: effective "2025-13-01": not a date (want YYYY-MM-DD)`},
		{"duplicate discount", `discounts: [{provider: p, percent: "5", effective: 2025-01-01}, {provider: P, percent: "6", effective: 2025-01-01}]`,
			`o.yaml: discount #2: a discount for provider "P" model "" effective 2025-01-01 is already given`},
		{"model without provider", `models: [{model: m, prices: [{effective: 2025-01-01, input: 1, output: 1}]}]`,
			"o.yaml: models #1: provider: missing"},
		{"model with a bad price", `models: [{provider: p, model: m, prices: [{effective: 2025-01-01, input: "1.0000001", output: 1}]}]`,
			`o.yaml: model "m" price effective 2025-01-01: input "1.0000001": more than 6 decimals`},
		{"deployment fields missing", `deployments: [{name: d}]`,
			"o.yaml: deployment #1: provider: missing\no.yaml: deployment #1: model: missing"},
		{"unknown field", `discounts: [{provider: p, percent: "5", effective: 2025-01-01, until: 2026-01-01}]`,
			"o.yaml: [1:64] unknown field \"until\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOverrides("o.yaml", []byte(tt.src))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || (tt.name != "not yaml" && err.Error() != tt.want) {
				t.Errorf("ParseOverrides error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// FuzzParseOverrides checks that no input makes the decoder panic, and that whatever it
// accepts keeps Overrides' invariants.
func FuzzParseOverrides(f *testing.F) {
	f.Add([]byte(`discounts: [{provider: p, model: m, percent: "12.5", effective: 2025-01-01}]`))
	f.Add([]byte(`models: [{provider: p, model: m, aliases: [a], prices: [{effective: 2025-01-01, input: 1, output: 2, tiers: {batch: {input: 0.5}}}]}]`))
	f.Add([]byte(`deployments: [{provider: azure, name: d, model: gpt-4o}]`))
	f.Add([]byte("discounts: &a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseOverrides("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Errorf("error does not name the file: %q", err)
			}
			return
		}
		if len(o.Discounts)+len(o.Models)+len(o.Deployments) == 0 {
			t.Errorf("accepted an empty overrides file")
		}
		for i, d := range o.Discounts {
			if d.Provider == "" || d.BasisPoints < 0 || d.BasisPoints > 10_000 || d.Effective.IsZero() {
				t.Errorf("accepted discount %+v", d)
			}
			if i > 0 && o.Discounts[i-1].Effective.After(d.Effective) {
				t.Errorf("discounts not ordered by date")
			}
		}
		for _, m := range o.Models {
			if m.Provider == "" || m.Model.Name == "" || len(m.Model.Prices) == 0 {
				t.Errorf("accepted model %+v", m)
			}
			for _, p := range m.Model.Prices {
				checkRates(t, p.Standard)
			}
		}
		for _, d := range o.Deployments {
			if d.Provider == "" || d.Name == "" || d.Model == "" {
				t.Errorf("accepted deployment %+v", d)
			}
		}
	})
}
