package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPricingLookup(t *testing.T) {
	var out bytes.Buffer
	err := runPricingTo(&out, []string{"lookup", "-at", "2025-11-01", "-tier", "batch", "-input", "1200", "-cached", "1000", "-output", "300",
		"openai", "gpt-4o-2024-08-06"})
	if err != nil {
		t.Fatal(err)
	}
	// Batch: 200·1.25 + 1000·1.25 + 300·5 µUSD.
	for _, want := range []string{"model:    gpt-4o\n", "version:  openai/gpt-4o@2024-10-01/batch\n", "cost:     0.003000000000 USD\n", "savings:  0.000000000000 USD\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lookup output lacks %q:\n%s", want, out.String())
		}
	}
	err = runPricingTo(&out, []string{"lookup", "openai", "gpt-4o", "--at", "2020-01-01"}) // flags after the names too
	if err == nil || !strings.HasPrefix(err.Error(), "openai gpt-4o at 2020-01-01T00:00:00Z: not priced") {
		t.Errorf("lookup before any price: %v", err)
	}
	if err := runPricingTo(&out, []string{"lookup", "-at", "yesterday", "openai", "gpt-4o"}); err == nil || err.Error() != `-at "yesterday": not an RFC 3339 time or a YYYY-MM-DD date` {
		t.Errorf("lookup with a bad time: %v", err)
	}
	if err := runPricingTo(&out, []string{"lookup", "openai"}); err == nil || !strings.HasPrefix(err.Error(), "usage: tokenmeter pricing lookup") {
		t.Errorf("lookup without a model: %v", err)
	}
}

// -unit prices a call's units with the shipped catalogue: 1000·3e6 + 500·15e6 + 3 searches at
// 0.01 USD; a unit the row does not price leaves the call unpriced.
func TestPricingLookupUnits(t *testing.T) {
	var out bytes.Buffer
	err := runPricingTo(&out, []string{"lookup", "-at", "2026-12-01", "-input", "1000", "-output", "500", "-unit", "web_search_calls=3",
		"anthropic", "claude-sonnet-4-5"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"  unit:     web_search_calls × 3 = 0.030000000000 USD\n", "cost:     0.040500000000 USD\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lookup output lacks %q:\n%s", want, out.String())
		}
	}
	err = runPricingTo(&out, []string{"lookup", "-at", "2026-12-01", "-unit", "image_outputs:1024x1024:high=1", "anthropic", "claude-sonnet-4-5"})
	if err == nil || !strings.Contains(err.Error(), "not priced (unknown provider or model, no price in force then, a unit without a price") {
		t.Errorf("lookup with an unpriced unit: %v", err)
	}
	if err := runPricingTo(&out, []string{"lookup", "-unit", "web_search_calls", "anthropic", "claude-sonnet-4-5"}); err == nil {
		t.Error("lookup with -unit without a count succeeded")
	}
}

func TestPricingImportLiteLLMAndValidate(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	err := runPricingTo(&out, []string{"import", "litellm", "-effective", "2025-11-01", "-source", "fixture", "-out", dir,
		"../../../enricher/pricing/litellm/testdata/model_prices_small.json"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ok: 10 models in 7 files, 9 notes\n") {
		t.Errorf("import output:\n%s", out.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) != 7 {
		t.Fatalf("import wrote %d files, want 7", len(files))
	}
	overrides := filepath.Join(dir, "deal.overrides.yaml")
	if err := os.WriteFile(overrides, []byte("discounts: [{provider: openai, model: gpt-4o, percent: \"10\", effective: 2025-11-01}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := runPricingTo(&out, append([]string{"validate"}, append(files, overrides)...)); err != nil {
		t.Fatalf("the imported files do not validate: %v", err)
	}
	if !strings.Contains(out.String(), "deal.overrides.yaml: overrides, 1 discounts, 0 models, 0 deployments\n") {
		t.Errorf("validate output:\n%s", out.String())
	}
	// The directory works as a pricing directory, overrides included: 10% off 1M input
	// tokens at 2.50 and 1M output tokens at 10.
	out.Reset()
	if err := runPricingTo(&out, []string{"lookup", "-pricing", dir, "-at", "2025-11-02", "openai", "gpt-4o"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cost:     11.250000000000 USD\n") || !strings.Contains(out.String(), "/discount=10%@2025-11-01\n") {
		t.Errorf("lookup in the imported directory:\n%s", out.String())
	}
	if err := runPricingTo(&out, []string{"import", "litellm", "-effective", "2025-13-01", "x.json"}); err == nil || err.Error() != `-effective "2025-13-01": not a YYYY-MM-DD date` {
		t.Errorf("import with a bad date: %v", err)
	}
	if err := runPricingTo(&out, []string{"import", "other", "x.json"}); err == nil || !strings.HasPrefix(err.Error(), "usage: tokenmeter pricing import litellm") {
		t.Errorf("import of an unknown format: %v", err)
	}
}
