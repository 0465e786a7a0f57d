package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPricingList(t *testing.T) {
	f := func(args []string, want string) {
		t.Helper()
		var out bytes.Buffer
		if err := runPricingTo(&out, append([]string{"list", "-pricing", "testdata/pricing"}, args...)); err != nil {
			t.Fatalf("list %v: %v", args, err)
		}
		if got := out.String(); got != want {
			t.Errorf("list %v:\n got %s\nwant %s", args, got, want)
		}
	}
	// On 2024-09-01 gpt-4o's first row is in force; claude-sonnet-4-5's only row is not yet,
	// and is shown all the same.
	f([]string{"-at", "2024-09-01"}, ""+
		"anthropic claude-3-haiku aliases=- effective=2024-03-13 standard[input=0.25 cached_input=0.03 cache_write=0.30 cache_write_1h=0.30 output=1.25 reasoning=1.25] checked=2026-12-06 refs=litellm,genai-prices\n"+
		"anthropic claude-sonnet-4-5 aliases=- effective=2025-09-29 standard[input=3.00 cached_input=0.30 cache_write=3.75 cache_write_1h=6.00 output=15.00 reasoning=15.00] batch[input=1.50 cached_input=0.15 cache_write=1.875 cache_write_1h=3.00 output=7.50 reasoning=7.50] long>200000[input=6.00 cached_input=0.60 cache_write=7.50 cache_write_1h=12.00 output=22.50 reasoning=22.50] long>200000/batch[input=3.00 cached_input=0.30 cache_write=3.75 cache_write_1h=6.00 output=11.25 reasoning=11.25] checked=2026-12-06 refs=litellm,genai-prices\n"+
		"openai gpt-4o aliases=chatgpt-4o-latest,gpt-4o-2024-08-06 effective=2024-05-13 standard[input=5.00 cached_input=5.00 cache_write=5.00 cache_write_1h=5.00 output=15.00 reasoning=15.00] checked=2026-12-06 refs=genai-prices\n"+
		"openai gpt-4o-mini aliases=- effective=2024-07-18 standard[input=0.15 cached_input=0.075 cache_write=0.15 cache_write_1h=0.15 output=0.60 reasoning=0.60] checked=2026-12-06 refs=litellm,genai-prices\n"+
		"openai text-embedding-3-small aliases=- effective=2024-01-25 standard[input=0.02 cached_input=0.02 cache_write=0.02 cache_write_1h=0.02 output=0.00 reasoning=0.00] checked=- refs=-\n")
	f([]string{"-provider", "OpenAI", "-at", "2026-12-06"}, ""+
		"openai gpt-4o aliases=chatgpt-4o-latest,gpt-4o-2024-08-06 effective=2024-10-01 standard[input=2.50 cached_input=1.25 cache_write=2.50 cache_write_1h=2.50 output=10.00 reasoning=10.00] batch[input=1.25 cached_input=1.25 cache_write=1.25 cache_write_1h=1.25 output=5.00 reasoning=5.00] checked=2026-12-06 refs=litellm,genai-prices\n"+
		"openai gpt-4o-mini aliases=- effective=2024-07-18 standard[input=0.15 cached_input=0.075 cache_write=0.15 cache_write_1h=0.15 output=0.60 reasoning=0.60] checked=2026-12-06 refs=litellm,genai-prices\n"+
		"openai text-embedding-3-small aliases=- effective=2024-01-25 standard[input=0.02 cached_input=0.02 cache_write=0.02 cache_write_1h=0.02 output=0.00 reasoning=0.00] checked=- refs=-\n")

	var out bytes.Buffer
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-provider", "nobody"}, `pricing list: no models of provider "nobody"`},
		{[]string{"-at", "soon"}, `-at "soon": not a YYYY-MM-DD date`},
		{[]string{"extra"}, pricingListUsage},
	} {
		err := runPricingTo(&out, append([]string{"list", "-pricing", "testdata/pricing"}, tt.args...))
		if err == nil || err.Error() != tt.want {
			t.Errorf("list %v: error %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestPricingListShipped lists the shipped catalogue: one line per model, every one checked.
func TestPricingListShipped(t *testing.T) {
	var out bytes.Buffer
	if err := runPricingTo(&out, []string{"list", "-provider", "groq"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 29 {
		t.Errorf("groq: %d lines, want 29:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "groq ") || strings.Contains(l, "checked=-") {
			t.Errorf("line %q: not a checked groq model", l)
		}
	}
}

// A row's audio rates and unit prices follow its token classes, units in USD per unit.
func TestPricingListUnits(t *testing.T) {
	dir := t.TempDir()
	src := `provider: openai
source: "https://openai.com/api/pricing, as known 2026-12"
models:
  - model: gpt-4o-audio-preview
    prices:
      - effective: 2024-12-17
        input: "2.50"
        output: "10.00"
        audio_input: "40"
        audio_output: "80"
        units: {web_search_calls: "0.01", "image_outputs:1024x1024:high": "0.167"}
`
	if err := os.WriteFile(filepath.Join(dir, "openai.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runPricingTo(&out, []string{"list", "-pricing", dir, "-at", "2026-12-06"}); err != nil {
		t.Fatal(err)
	}
	want := "openai gpt-4o-audio-preview aliases=- effective=2024-12-17 standard[input=2.50 cached_input=2.50 cache_write=2.50 cache_write_1h=2.50 output=10.00 reasoning=10.00 " +
		"audio_input=40.00 audio_output=80.00 image_outputs:1024x1024:high=0.167/unit web_search_calls=0.01/unit] checked=- refs=-\n"
	if got := out.String(); got != want {
		t.Errorf("list:\n got %s\nwant %s", got, want)
	}
}
