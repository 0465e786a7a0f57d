package enrich

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// TestUnpricedProvidersFoldIntoOther performs the attack: a client sends events of 500
// invented providers (and a known one in odd case). The unpriced counter must keep one series
// for the known provider, under its canonical name, and one, "other", for all the rest.
func TestUnpricedProvidersFoldIntoOther(t *testing.T) {
	nc, js := startJetStream(t)
	dir := t.TempDir()
	writeFile(t, dir, "acme.yaml", `
provider: acme
models:
  - model: m1
    prices:
      - effective: 2025-06-01
        input: "3"
        output: "15"
`)
	e := runEnricher(t, nc, Config{PricingDir: dir, PricingPoll: time.Hour, Logger: slog.New(slog.DiscardHandler)})

	at := time.Date(2025, 11, 2, 10, 0, 0, 0, time.UTC)
	var rows []batch.Row
	for i := range 500 {
		rows = append(rows, batch.Row{ID: "x" + strconv.Itoa(i), Time: at, Received: at, Provider: "evil-" + strconv.Itoa(i),
			Model: "m1", Tokens: event.Tokens{Input: 1, Output: 1}})
	}
	rows = append(rows, batch.Row{ID: "k", Time: at, Received: at, Provider: "ACME", Model: "unknown-model", Tokens: event.Tokens{Input: 1, Output: 1}})
	data, err := batch.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, 0, data, batch.SchemaName)
	next(t, js, stream.Enriched, stream.EnrichedSubject(0))
	if n := testutil.CollectAndCount(e.m.unpriced); n != 2 {
		t.Errorf("unpriced_events has %d series, want 2 (acme and other)", n)
	}
	if got := testutil.ToFloat64(e.m.unpriced.WithLabelValues("other")); got != 500 {
		t.Errorf("unpriced_events{provider=other} = %v, want 500", got)
	}
	if got := testutil.ToFloat64(e.m.unpriced.WithLabelValues("acme")); got != 1 {
		t.Errorf("unpriced_events{provider=acme} = %v, want 1", got)
	}
}
