package genaiprices

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/enricher/pricing/refdiff"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

const deepseek = `
id: deepseek
fallback_model_providers: [openai]
extractors: [{root: usage, mappings: [{path: x, dest: y}]}]
models:
  - id: deepseek-chat
    match:
      and:
        - starts_with: deepseek
        - or: [{ends_with: chat}, {contains: v3}]
    prices:
      - prices: {input_mtok: 0.135, cache_read_mtok: 0.035, output_mtok: 0.55}
      - constraint: {start_time: "00:30:00Z", end_time: "16:30:00Z"}
        prices: {input_mtok: 0.27, cache_read_mtok: 0.07, output_mtok: 1.1}
  - id: deepseek-v9
    match: {equals: DeepSeek-V9}
    prices:
      input_mtok: 2.5e-1
      output_mtok: {base: 1, tiers: [{start: 128000, price: 2}]}
      requests_kcount: 1
  - id: no-match
    prices: {input_mtok: 1}
  - id: later
    match: {regex: '^later-\d+$'}
    prices:
      - constraint: {start_date: 2030-01-01}
        prices: {input_mtok: 1, output_mtok: 1}
`

func TestParse(t *testing.T) {
	p, notes, err := Parse("deepseek.yml", []byte(deepseek))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`deepseek.yml: model "no-match": skipped: match: 0 conditions in one clause, want exactly 1`}; !reflect.DeepEqual(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
	if p.ID != "deepseek" || !reflect.DeepEqual(p.Fallbacks, []string{"openai"}) || len(p.Models) != 3 {
		t.Fatalf("Parse = %+v", p)
	}
	chat, v9, later := p.Models[0], p.Models[1], p.Models[2]
	want := []Price{
		{Prices: refdiff.Prices{"input": "0.135", "cached_input": "0.035", "output": "0.55"}},
		{Daily: 16 * time.Hour, Prices: refdiff.Prices{"input": "0.27", "cached_input": "0.07", "output": "1.1"}},
	}
	if !reflect.DeepEqual(chat.Prices, want) {
		t.Errorf("deepseek-chat prices %+v, want %+v", chat.Prices, want)
	}
	if want := []Price{{Prices: refdiff.Prices{"input": "0.25", "output": "1", "long.above": "128000", "long.output": "2"}}}; !reflect.DeepEqual(v9.Prices, want) {
		t.Errorf("deepseek-v9 prices %+v, want %+v", v9.Prices, want)
	}
	for _, tt := range []struct {
		m    *Model
		name string
		want bool
	}{
		{&chat, "deepseek-chat", true}, {&chat, "DeepSeek-V3.2", true}, {&chat, "deepseek-reasoner", false}, {&chat, "my-deepseek-chat", false},
		{&v9, "deepseek-v9", true}, {&v9, "deepseek-v9-x", false},
		{&later, "later-12", true}, {&later, "later-x", false},
	} {
		if got := tt.m.Match.Matches(tt.name); got != tt.want {
			t.Errorf("%s matches %q = %v, want %v", tt.m.ID, tt.name, got, tt.want)
		}
	}
	// The standard hours (16 of 24) win over the unconstrained off-peak price.
	if got, ok := chat.at(date("2026-01-01")); !ok || got["input"] != "0.27" {
		t.Errorf("deepseek-chat at 2026-01-01 = %v, %v; want the 0.27 standard-hours price", got, ok)
	}
	if got, ok := later.at(date("2029-12-31")); ok {
		t.Errorf("later at 2029-12-31 = %v, want no price yet", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"name: x\n", "x.yml: id: missing"},
		{"id: x\nmodels:\n  - id: m\n    match: {equals: m}\n    prices: 3\n", "x.yml: prices: want a mapping or a list, got Integer"},
		{"id: [x\n", "x.yml: [1:5] sequence end token ']' not found"},
	} {
		if _, _, err := Parse("x.yml", []byte(tt.src)); err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) error %v, want %q", tt.src, err, tt.want)
		}
	}
	p, notes, err := Parse("x.yml", []byte("id: x\nmodels:\n  - id: m\n    match: {equals: m}\n    prices: {input_mtok: abc}\n"+
		"  - id: n\n    match: {equals: n}\n    prices: [{constraint: {start_date: soon}, prices: {input_mtok: 1}}]\n"))
	if err != nil || len(p.Models) != 0 {
		t.Fatalf("Parse = %+v, %v", p, err)
	}
	want := []string{`x.yml: model "m": skipped: input_mtok: "abc": not a number`, `x.yml: model "n": skipped: start_date "soon": not a date`}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestReferenceFind(t *testing.T) {
	const openai = "id: openai\nmodels:\n  - id: gpt-4o\n    match: {starts_with: gpt-4o}\n    prices: {input_mtok: 2.5, output_mtok: 10}\n"
	const azure = "id: azure\nfallback_model_providers: [openai]\nmodels:\n  - id: gpt-35-turbo\n    match: {equals: gpt-35-turbo}\n    prices: {input_mtok: 0.5, output_mtok: 1.5}\n"
	const aws = "id: aws\nmodels:\n  - id: regional.anthropic.claude-x-20250101-v1:0\n    match: {starts_with: anthropic.claude-x-20250101}\n    prices: {input_mtok: 3.3, output_mtok: 16.5}\n"
	var providers []Provider
	for name, src := range map[string]string{"openai.yml": openai, "azure.yml": azure, "aws.yml": aws} {
		p, _, err := Parse(name, []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		providers = append(providers, p)
	}
	file := func(provider, model string) pricefile.File {
		f, err := pricefile.Parse(provider+".yaml", []byte("provider: "+provider+"\nmatch: {strip_prefixes: [us.], strip_version_suffix: true}\nmodels:\n  - model: "+model+"\n    prices: [{effective: 2025-01-01, input: \"1\", output: \"1\"}]\n"))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	files := []pricefile.File{file("azure", "gpt-4o"), file("bedrock", "anthropic.claude-x"), file("openai", "o9")}
	cat, err := pricing.New(files...)
	if err != nil {
		t.Fatal(err)
	}
	ref := NewReference(providers, cat)
	for _, tt := range []struct {
		f      pricefile.File
		want   string
		wantOK bool
	}{
		{files[0], "gpt-4o", true},                                    // from Azure's fallback, OpenAI
		{files[1], "regional.anthropic.claude-x-20250101-v1:0", true}, // by its id, which the catalogue resolves
		{files[2], "", false},
	} {
		e, ok := ref.Find(tt.f.Provider, tt.f.Models[0], date("2026-01-01"))
		if e.Name != tt.want || ok != tt.wantOK {
			t.Errorf("Find(%s, %s) = %+v, %v; want %q, %v", tt.f.Provider, tt.f.Models[0].Name, e, ok, tt.want, tt.wantOK)
		}
	}
}

// FuzzParse checks that no input makes the reader panic, and that every model it accepts has
// an id and a usable match rule.
func FuzzParse(f *testing.F) {
	f.Add([]byte(deepseek))
	f.Add([]byte("id: x\nmodels:\n  - id: m\n    match: {or: [{and: [{equals: a}]}]}\n    prices: {input_mtok: {base: 1, tiers: [{start: 1, price: 2}]}}\n"))
	f.Add([]byte("id: x\nmodels: [{id: m, match: {regex: '('}, prices: []}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := Parse("f.yml", data)
		if err != nil {
			return
		}
		for _, m := range p.Models {
			if m.ID == "" {
				t.Fatalf("accepted a model without id: %+v", m)
			}
			m.Match.Matches(strings.Repeat("a", 3))
			m.at(date("2026-01-01"))
		}
	})
}
