package pricefile

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseUnits(t *testing.T) {
	const src = `
provider: openai
models:
  - model: gpt-4o-audio-preview
    prices:
      - effective: 2024-12-17
        input: "2.50"
        output: "10.00"
        audio_input: "40"
        audio_output: "80"
        units:
          web_search_calls: "0.025"
          "image_outputs:1024x1024:high": "0.167"
          requests: 0.000000000001
        tiers:
          batch: {input: "1.25", output: "5.00", audio_input: "20", units: {web_search_calls: "0.02"}}
        long_context:
          above: 128000
          input: "5"
          output: "20"
          units: {requests: "0.01"}
          tiers: {batch: {input: "2.50", output: "10"}}
`
	f, err := Parse("openai.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	p := f.Models[0].Prices[0]
	for _, tc := range []struct {
		name string
		got  map[string]PicoUSD
		want map[string]PicoUSD
	}{
		{"standard", p.Standard.Units, map[string]PicoUSD{
			"audio_input_tokens": 40_000_000, "audio_output_tokens": 80_000_000,
			"web_search_calls": 25_000_000_000, "image_outputs:1024x1024:high": 167_000_000_000, "requests": 1}},
		// A tier overrides the keys it names and inherits the others.
		{"batch", p.Tiers["batch"].Units, map[string]PicoUSD{
			"audio_input_tokens": 20_000_000, "audio_output_tokens": 80_000_000,
			"web_search_calls": 20_000_000_000, "image_outputs:1024x1024:high": 167_000_000_000, "requests": 1}},
		// A long-context block inherits the row's units and audio prices.
		{"long", p.LongContext.Standard.Units, map[string]PicoUSD{
			"audio_input_tokens": 40_000_000, "audio_output_tokens": 80_000_000,
			"web_search_calls": 25_000_000_000, "image_outputs:1024x1024:high": 167_000_000_000, "requests": 10_000_000_000}},
		{"long batch", p.LongContext.Tiers["batch"].Units, map[string]PicoUSD{
			"audio_input_tokens": 40_000_000, "audio_output_tokens": 80_000_000,
			"web_search_calls": 25_000_000_000, "image_outputs:1024x1024:high": 167_000_000_000, "requests": 10_000_000_000}},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s units = %v\nwant %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestParseUnitsErrors(t *testing.T) {
	const src = `
provider: openai
models:
  - model: m
    prices:
      - effective: 2025-01-01
        input: "1"
        output: "1"
        audio_input: "1.0000001"
        units:
          web_searches: "0.01"
          audio_input_tokens: "0.01"
          "image_outputs:HD": "0.1"
          "image_outputs:hd": "10.000000000001"
          requests: "0.0000000000001"
          web_search_calls: "-0.01"
          "requests:high":
`
	_, err := Parse("openai.yaml", []byte(src))
	const where = `openai.yaml: model "m" price effective 2025-01-01: `
	const notUnit = ` is not a unit (want web_search_calls, image_outputs or requests, optionally with ":<variant>"; audio is priced by audio_input and audio_output)`
	want := []string{
		where + `audio_input "1.0000001": more than 6 decimals`,
		where + `units: key "audio_input_tokens"` + notUnit,
		where + `units: key "image_outputs:HD"` + notUnit,
		where + `units: image_outputs:hd "10.000000000001": above 10 USD per unit`,
		where + `units: requests "0.0000000000001": more than 12 decimals`,
		where + `units: requests:high: no price`,
		where + `units: web_search_calls "-0.01": negative`,
		where + `units: key "web_searches"` + notUnit,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("Parse() error =\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

func TestParseUSDPerUnit(t *testing.T) {
	f := func(s string, want PicoUSD, wantErr error) {
		t.Helper()
		got, err := ParseUSDPerUnit(s)
		if got != want || !errors.Is(err, wantErr) {
			t.Errorf("ParseUSDPerUnit(%q) = %d, %v, want %d, %v", s, got, err, want, wantErr)
		}
	}
	f("0.01", 10_000_000_000, nil)
	f("0.167", 167_000_000_000, nil)
	f("10", 10_000_000_000_000, nil)
	f("0.000000000001", 1, nil)
	f("10.000000000001", 0, ErrUnitTooHigh)
	f("11", 0, ErrUnitTooHigh)
	f("0.0000000000001", 0, ErrUnitTooPrecise)
	f("-1", 0, ErrNegative)
	f("1e-2", 0, ErrNotDecimal)
	f("", 0, ErrNotDecimal)
}

func TestPicoUSDPerUnit(t *testing.T) {
	f := func(p PicoUSD, want string) {
		t.Helper()
		if got := p.USDPerUnit(); got != want {
			t.Errorf("PicoUSD(%d).USDPerUnit() = %q, want %q", p, got, want)
		}
	}
	f(10_000_000_000, "0.01")
	f(167_000_000_000, "0.167")
	f(10_000_000_000_000, "10.00")
	f(1, "0.000000000001")
	f(0, "0.00")
}
