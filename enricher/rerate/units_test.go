package rerate

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// Before the correction a web search of m1 costs 0.01 USD and an image 0.04; after it, a
// search costs 0.025 and images are unchanged.
const (
	unitsBefore = `provider: acme
models:
  - model: m1
    prices: [{effective: 2025-01-01, input: "1", output: "2", units: {web_search_calls: "0.01", image_outputs: "0.04"}}]
`
	unitsAfter = `provider: acme
models:
  - model: m1
    prices: [{effective: 2025-01-01, input: "1", output: "2", units: {web_search_calls: "0.025", image_outputs: "0.04"}}]
`
)

// TestRerateUnits: re-rating reproduces unit costs — per key in cost_corrections and in
// unit_spend_1m, and in the total of spend_1m — exactly once.
func TestRerateUnits(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	before, after := catalogue(t, unitsBefore), catalogue(t, unitsAfter)
	at := time.Date(2025, 6, 10, 12, 0, 0, 0, time.UTC)
	tokens := event.Tokens{Input: 1000, Output: 500}
	units := event.Units{"image_outputs:1024x1024:high": 1, "web_search_calls": 3}
	q, uc := before.PriceUnits("acme", "m1", "", at, tokens, units, false)
	// 1000·1e6 + 500·2e6 + 1·4e10 + 3·1e10 = 2e9 + 7e10.
	if want := pricefile.PicoUSD(72_000_000_000); q.Cost != want {
		t.Fatalf("cost before = %d, want %d", q.Cost, want)
	}
	b, err := conn.PrepareBatch(ctx, `INSERT INTO `+db+`.usage_events (event_id, time, provider, model, model_priced, team,
		input_tokens, output_tokens, cost_usd, priced, price_version, service_tier, unit_keys, unit_counts, unit_costs_usd)`)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var counts []uint64
	var costs []decimal.Decimal
	for _, u := range uc {
		keys, counts, costs = append(keys, u.Key), append(counts, uint64(u.Count)), append(costs, usd(u.Cost))
	}
	if err := b.Append("u1", at, "acme", "m1", q.Model, "search", uint64(tokens.Input), uint64(tokens.Output),
		usd(q.Cost), uint8(1), q.Version, "standard", keys, counts, costs); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	r := Range{From: at.Add(-time.Hour), To: at.Add(time.Hour)}
	plan, err := Compute(ctx, conn, db, after, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Changes) != 1 {
		t.Fatalf("%d changes, want 1", len(plan.Changes))
	}
	c := plan.Changes[0]
	wantUnits := []UnitCount{{"image_outputs:1024x1024:high", 1}, {"web_search_calls", 3}}
	if !reflect.DeepEqual(c.Units, wantUnits) ||
		!reflect.DeepEqual(c.OldUnitCosts, []pricefile.PicoUSD{40_000_000_000, 30_000_000_000}) ||
		!reflect.DeepEqual(c.NewUnitCosts, []pricefile.PicoUSD{40_000_000_000, 75_000_000_000}) ||
		c.Old.Cost != 72_000_000_000 || c.New.Cost != 117_000_000_000 {
		t.Fatalf("change = %+v", c)
	}
	if err := Apply(ctx, conn, db, plan, NewRun(time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC), after.Version(), "test", "")); err != nil {
		t.Fatal(err)
	}
	// Exactly once: the same re-rating again finds nothing to change.
	if again, err := Compute(ctx, conn, db, after, r); err != nil || len(again.Changes) != 0 || again.VersionOnly != 0 {
		t.Fatalf("second Compute = %d changes, %d version-only, %v; want none", len(again.Changes), again.VersionOnly, err)
	}
	read := func(query string) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(ctx, query).Scan(&s); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return s
	}
	for query, want := range map[string]string{
		"SELECT toString(sum(cost_usd)) FROM " + db + ".spend_1m":                                                  "0.117000000000",
		"SELECT toString(sum(cost_usd)) FROM " + db + ".unit_spend_1m WHERE unit = 'web_search_calls'":             "0.075000000000",
		"SELECT toString(sum(units)) FROM " + db + ".unit_spend_1m WHERE unit = 'web_search_calls'":                "3",
		"SELECT toString(sum(events)) FROM " + db + ".unit_spend_1d WHERE unit = 'web_search_calls'":               "1",
		"SELECT toString(sum(cost_usd)) FROM " + db + ".unit_spend_1d WHERE unit = 'image_outputs:1024x1024:high'": "0.040000000000",
	} {
		if got := read(query); got != want {
			t.Errorf("%s = %s, want %s", query, got, want)
		}
	}
}
