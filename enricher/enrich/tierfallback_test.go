package enrich

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// An event of a tier its model has no price for is priced at standard prices, and says so:
// its price version names the standard tier (batch.Row.TierFallback), and it is counted.
func TestEnrichFlagsTierFallback(t *testing.T) {
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
        tiers:
          batch: {input: "1.50", output: "7.50"}
`)
	e := runEnricher(t, nc, Config{PricingDir: dir, PricingPoll: time.Hour, Logger: slog.New(slog.DiscardHandler)})

	at := time.Date(2025, 11, 2, 10, 0, 0, 0, time.UTC)
	row := func(id, tier string) batch.Row {
		return batch.Row{ID: id, Time: at, Received: at, Provider: "acme", Model: "m1", ServiceTier: tier,
			Tokens: event.Tokens{Input: 1000, Output: 100}}
	}
	data, err := batch.Encode([]batch.Row{row("s", event.TierStandard), row("b", event.TierBatch),
		row("p", event.TierPriority), row("f", event.TierFlex), row("p2", event.TierPriority)})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, 0, data, batch.SchemaName)
	got, err := batch.Decode(next(t, js, stream.Enriched, stream.EnrichedSubject(0)).Data())
	if err != nil {
		t.Fatal(err)
	}
	// 1000 × 3 + 100 × 15 USD/M = 4,500,000,000 pico at standard prices; half in batch.
	want := []struct {
		version  string
		cost     int64
		fallback bool
	}{
		{"acme/m1@2025-06-01/standard", 4_500_000_000, false},
		{"acme/m1@2025-06-01/batch", 2_250_000_000, false},
		{"acme/m1@2025-06-01/standard", 4_500_000_000, true},
		{"acme/m1@2025-06-01/standard", 4_500_000_000, true},
		{"acme/m1@2025-06-01/standard", 4_500_000_000, true},
	}
	for i, w := range want {
		if g := got[i]; g.PriceVersion != w.version || g.CostPico != w.cost || g.TierFallback() != w.fallback {
			t.Errorf("row %s: version %q cost %d fallback %t; want %q %d %t", g.ID, g.PriceVersion, g.CostPico, g.TierFallback(), w.version, w.cost, w.fallback)
		}
	}
	for _, c := range []struct {
		tier string
		want float64
	}{{"priority", 2}, {"flex", 1}, {"batch", 0}, {"standard", 0}} {
		if got := testutil.ToFloat64(e.m.tierFallback.WithLabelValues("acme", c.tier)); got != c.want {
			t.Errorf("tier_fallback_events{provider=acme, tier=%s} = %v, want %v", c.tier, got, c.want)
		}
	}
}
