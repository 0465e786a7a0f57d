package litellm

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/enricher/pricing/refdiff"
)

func TestEntries(t *testing.T) {
	data := []byte(`{
  "sample_spec": {"input_cost_per_token": 0.0},
  "gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "cache_read_input_token_cost": 1.25e-06,
    "output_cost_per_token": 1e-05, "input_cost_per_token_batches": 1.25e-06, "output_cost_per_token_priority": 1.7e-05},
  "gemini/gemini-2.5-pro": {"litellm_provider": "gemini", "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
    "input_cost_per_token_above_200k_tokens": 2.5e-06, "output_cost_per_token_above_200k_tokens": 1.5e-05},
  "bedrock/us-east-1/anthropic.claude-x": {"litellm_provider": "bedrock", "input_cost_per_token": 1e-06},
  "noise": {"litellm_provider": "openai", "input_cost_per_token": 2.5000000000000004e-07, "output_cost_per_token": "x"},
  "img": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04}
}`)
	entries, notes, err := Entries(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []refdiff.Entry{
		{Provider: "google", Name: "gemini-2.5-pro", Prices: refdiff.Prices{"input": "1.25", "output": "10",
			"long.above": "200000", "long.input": "2.5", "long.output": "15"}},
		{Provider: "openai", Name: "gpt-4o", Prices: refdiff.Prices{"input": "2.5", "cached_input": "1.25", "output": "10",
			"batch.input": "1.25", "priority.output": "17"}},
	}
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", entries, want)
	}
	wantNotes := []string{
		"bedrock/us-east-1/anthropic.claude-x: skipped: a region- or commitment-specific Bedrock price",
		`img: skipped: no input_cost_per_token (mode "image_generation")`,
		"noise: skipped: output_cost_per_token is not a number",
	}
	if !reflect.DeepEqual(notes, wantNotes) {
		t.Errorf("notes:\n got %q\nwant %q", notes, wantNotes)
	}
	if _, _, err := Entries([]byte(`[1]`)); err == nil || !strings.HasPrefix(err.Error(), "read litellm: decode JSON object: ") {
		t.Errorf("Entries of a list: %v", err)
	}
}

// FuzzEntries checks that no input makes Entries panic, and that every entry it returns has
// a provider, a name and an input price.
func FuzzEntries(f *testing.F) {
	if data, err := os.ReadFile("testdata/model_prices_small.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"m": {"litellm_provider": "openai", "input_cost_per_token": 1e-6, "input_cost_per_token_above_128k_tokens": 2e-6}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _, err := Entries(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Provider == "" || e.Name == "" || e.Prices["input"] == "" {
				t.Fatalf("entry %+v lacks a provider, name or input price", e)
			}
		}
	})
}
