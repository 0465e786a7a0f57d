package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestPricingDiff(t *testing.T) {
	f := func(args []string, want string) {
		t.Helper()
		var out bytes.Buffer
		if err := runPricingTo(&out, append([]string{"diff"}, args...)); err != nil {
			t.Fatalf("diff %v: %v", args, err)
		}
		if got := out.String(); got != want {
			t.Errorf("diff %v:\n got %s\nwant %s", args, got, want)
		}
	}
	// LiteLLM: gpt-4o is compared with the entry named "gpt-4o", not with its dated snapshot
	// (priced differently in the fixture); claude-3-haiku with its snapshot, the only entry.
	// Fields LiteLLM does not state (gpt-4o's flex, claude-3-haiku's reasoning) are not compared.
	f([]string{"litellm", "-pricing", "testdata/pricing", "-at", "2026-12-06", "-notes", "testdata/litellm-small.json"}, ""+
		"anthropic claude-3-haiku@2024-03-13 cache_write_1h: catalogue 0.30, reference 6.00 (claude-3-haiku-20240307)\n"+
		"openai gpt-4o@2024-10-01 priority.input: catalogue -, reference 4.25 (gpt-4o)\n"+
		"note: dall-e-3: skipped: no input_cost_per_token (mode \"image_generation\")\n"+
		"litellm: 5 models compared, 2 differ (2 fields), 0 not in the reference, 1 reference entries left out\n")
	// genai-prices: its dated gpt-4o price of 2026-11-01 differs from the catalogue's row.
	f([]string{"genai-prices", "-pricing", "testdata/pricing", "-at", "2026-12-06", "-notes", "testdata/genai-prices"}, ""+
		"anthropic claude-3-haiku@2024-03-13 cache_write_1h: catalogue 0.30, reference 0.50 (claude-3-haiku)\n"+
		"openai gpt-4o@2024-10-01 input: catalogue 2.50, reference 2.25 (gpt-4o)\n"+
		"note: anthropic.yml: model \"claude-bad\": skipped: match: regex \"(?<=claude)-bad\": error parsing regexp: invalid named capture: `(?<=claude)-bad`\n"+
		"genai-prices: 5 models compared, 2 differ (2 fields), 0 not in the reference, 1 reference entries left out\n")
	// On 2024-06-01 both sides have gpt-4o's launch price.
	f([]string{"genai-prices", "-pricing", "testdata/pricing", "-at", "2024-06-01", "testdata/genai-prices"}, ""+
		"anthropic claude-3-haiku@2024-03-13 cache_write_1h: catalogue 0.30, reference 0.50 (claude-3-haiku)\n"+
		"genai-prices: 5 models compared, 1 differ (1 fields), 0 not in the reference, 1 reference entries left out\n")

	var out bytes.Buffer
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"langfuse", "x"}, pricingDiffUsage},
		{[]string{"litellm"}, pricingDiffUsage},
		{[]string{"litellm", "-at", "soon", "testdata/litellm-small.json"}, `-at "soon": not a YYYY-MM-DD date`},
		{[]string{"litellm", "testdata/none.json"}, "pricing diff litellm: open testdata/none.json: no such file or directory"},
		{[]string{"genai-prices", "testdata/pricing"}, "pricing diff genai-prices testdata/pricing: no *.yml provider files"},
	} {
		err := runPricingTo(&out, append([]string{"diff"}, tt.args...))
		if err == nil || err.Error() != tt.want {
			t.Errorf("diff %v: error %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestPricingDiffShipped runs the diff of the shipped catalogue against the LiteLLM fixture:
// the five models it names are compared, the shipped catalogue states gpt-4o's priority
// price, and only LiteLLM's typo in claude-3-haiku's 1-hour cache write differs.
func TestPricingDiffShipped(t *testing.T) {
	var out bytes.Buffer
	if err := runPricingTo(&out, []string{"diff", "litellm", "-at", "2026-12-06", "testdata/litellm-small.json"}); err != nil {
		t.Fatal(err)
	}
	want := "anthropic claude-3-haiku@2024-03-13 cache_write_1h: catalogue 0.50, reference 6.00 (claude-3-haiku-20240307)\n"
	if got := out.String(); !strings.HasPrefix(got, want+"litellm: 5 models compared, 1 differ (1 fields), ") {
		t.Errorf("diff of the shipped catalogue:\n got %s\nwant %slitellm: 5 models compared, 1 differ (1 fields), …", got, want)
	}
}
