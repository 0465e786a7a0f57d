package main

import (
	"io"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.events != 1_000_000 || c.bench.BatchSize != 1000 || c.bench.Clients != 4 || c.bench.MarkerEvery != 10 || c.paced != 0.8 || !c.emit {
		t.Errorf("defaults: %+v", c)
	}
	_, err = parseFlags([]string{"-events", "0", "-paced", "1.5", "-rate", "-1", "-clients", "-2", "extra"}, io.Discard)
	want := []string{
		`unexpected arguments ["extra"]`,
		"events (0) must be positive",
		"paced (1.5) must be within [0, 1]",
		"rate (-1) must not be negative",
		"clients (-2) must be positive",
	}
	if err == nil {
		t.Fatal("parseFlags accepted invalid flags")
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("parseFlags error:\n got %s\nwant %s", got, strings.Join(want, "\n"))
	}
}
