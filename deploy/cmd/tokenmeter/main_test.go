package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPricingValidate(t *testing.T) {
	shipped, err := filepath.Glob("../../../enricher/pricing/catalog/*.yaml")
	if err != nil || len(shipped) < 2 {
		t.Fatalf("shipped catalogue: %v (%d files)", err, len(shipped))
	}
	if err := runPricing(append([]string{"validate"}, shipped...)); err != nil {
		t.Errorf("the shipped catalogue does not validate: %v", err)
	}
	err = runPricing([]string{"validate", "testdata/broken.yaml"})
	if err == nil || !strings.Contains(err.Error(), `model "acme-llm-7"`) || !strings.Contains(err.Error(), `"2.5x"`) {
		t.Errorf("broken file: err = %v, want it to name the model and the bad value", err)
	}
	if err := runPricing([]string{"check"}); err == nil || err.Error() != "usage: tokenmeter pricing validate FILE..." {
		t.Errorf("bad usage: err = %v", err)
	}
}

func TestUnknownCommandExitsWithUsage(t *testing.T) {
	if code := run([]string{"frobnicate"}); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if code := run([]string{"help"}); code != 0 {
		t.Errorf("help: exit code %d, want 0", code)
	}
}
