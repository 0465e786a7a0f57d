package refdiff

import (
	"reflect"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

const openai = `
provider: openai
models:
  - model: gpt-4o
    aliases: [chatgpt-4o-latest]
    prices:
      - effective: 2024-05-13
        input: "5"
        output: "15"
      - effective: 2024-10-01
        input: "2.50"
        cached_input: "1.25"
        output: "10"
        tiers:
          batch: {input: "1.25", output: "5"}
  - model: gemini-ish
    prices:
      - effective: 2025-01-01
        input: "1.25"
        output: "10"
        long_context: {above: 200000, input: "2.50", output: "15"}
  - model: unlisted
    prices: [{effective: 2025-01-01, input: "1", output: "1"}]
`

func files(t *testing.T) []pricefile.File {
	t.Helper()
	f, err := pricefile.Parse("openai.yaml", []byte(openai))
	if err != nil {
		t.Fatal(err)
	}
	return []pricefile.File{f}
}

// table is a Reference by model name, as a test states it.
type table map[string]Entry

func (tb table) Find(_ string, m pricefile.Model, _ time.Time) (Entry, bool) {
	e, ok := tb[m.Name]
	return e, ok
}

func TestDiff(t *testing.T) {
	ref := table{
		"gpt-4o": {Name: "gpt-4o", Prices: Prices{"input": "2.5", "cached_input": "1.25", "output": "12",
			"batch.input": "1.25", "flex.input": "1.25", "priority.output": "17", "reasoning": "x"}},
		"gemini-ish": {Name: "gemini-ish-001", Prices: Prices{"input": "1.25", "output": "10",
			"long.above": "128000", "long.input": "2.5", "long.output": "20"}},
	}
	at := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	got := Diff(files(t), ref, at)
	eff := time.Date(2024, 10, 1, 0, 0, 0, 0, time.UTC)
	gem := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	want := Result{Compared: 2, Missing: 1, Differing: 2, Differences: []Difference{
		{"openai", "gpt-4o", eff, "output", "10.00", "12.00", "gpt-4o"},
		{"openai", "gpt-4o", eff, "reasoning", "10.00", `"x": not a decimal`, "gpt-4o"},
		{"openai", "gpt-4o", eff, "flex.input", "-", "1.25", "gpt-4o"},
		{"openai", "gpt-4o", eff, "priority.output", "-", "17.00", "gpt-4o"},
		{"openai", "gemini-ish", gem, "long.above", "200000", "128000", "gemini-ish-001"},
		{"openai", "gemini-ish", gem, "long.output", "15.00", "20.00", "gemini-ish-001"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff:\n got %+v\nwant %+v", got, want)
	}
	if s, w := got.Differences[0].String(), "openai gpt-4o@2024-10-01 output: catalogue 10.00, reference 12.00 (gpt-4o)"; s != w {
		t.Errorf("String() = %q, want %q", s, w)
	}
	// Before the second row, the first is compared.
	got = Diff(files(t), table{"gpt-4o": {Name: "gpt-4o", Prices: Prices{"input": "5", "output": "15"}}}, eff.Add(-time.Second))
	if got.Compared != 1 || got.Missing != 2 || len(got.Differences) != 0 {
		t.Errorf("Diff before 2024-10-01 = %+v, want gpt-4o compared and equal", got)
	}
}

func TestByName(t *testing.T) {
	fs := files(t)
	cat, err := pricing.New(fs...)
	if err != nil {
		t.Fatal(err)
	}
	e := func(name, input string) Entry {
		return Entry{Provider: "openai", Name: name, Prices: Prices{"input": input}}
	}
	b := NewByName(cat, []Entry{e("gpt-4o-2024-08-06", "9"), e("chatgpt-4o-latest", "5"), e("gpt-4o", "2.5"),
		e("gemini-ish-2025-01-01", "1.25"), e("gemini-ish-20250101", "1.5"), e("nobody", "1"),
		{Provider: "anthropic", Name: "gpt-4o", Prices: Prices{"input": "7"}}})
	for _, tt := range []struct {
		model, want string
		ok          bool
	}{
		{"gpt-4o", "gpt-4o", true},                  // the exact name wins over an alias and a snapshot
		{"gemini-ish", "gemini-ish-20250101", true}, // else the shortest name
		{"unlisted", "", false},
	} {
		m := fs[0].Models[slicesIndex(fs[0].Models, tt.model)]
		got, ok := b.Find("openai", m, time.Time{})
		if got.Name != tt.want || ok != tt.ok {
			t.Errorf("Find(%s) = %+v, %v; want %q, %v", tt.model, got, ok, tt.want, tt.ok)
		}
	}
}

func slicesIndex(ms []pricefile.Model, name string) int {
	for i, m := range ms {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// Audio rates are compared like the token classes: the row's audio price, or its text price
// when it has none (what pricing charges for audio then).
func TestDiffAudio(t *testing.T) {
	f, err := pricefile.Parse("openai.yaml", []byte(`
provider: openai
models:
  - model: audio
    prices: [{effective: 2025-01-01, input: "2.50", output: "10", audio_input: "40", audio_output: "80"}]
  - model: textonly
    prices: [{effective: 2025-01-01, input: "0.30", output: "2.50"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	ref := table{
		"audio":    {Name: "audio", Prices: Prices{"input": "2.5", "audio_input": "40", "audio_output": "64"}},
		"textonly": {Name: "textonly", Prices: Prices{"input": "0.3", "audio_input": "1"}},
	}
	res := Diff([]pricefile.File{f}, ref, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	var got []string
	for _, d := range res.Differences {
		got = append(got, d.String())
	}
	want := []string{
		"openai audio@2025-01-01 audio_output: catalogue 80.00, reference 64.00 (audio)",
		"openai textonly@2025-01-01 audio_input: catalogue 0.30, reference 1.00 (textonly)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("differences =\n%q\nwant\n%q", got, want)
	}
}
