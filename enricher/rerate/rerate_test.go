package rerate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/chschema"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// migrated returns a fresh database with every migration applied.
func migrated(t *testing.T) (driver.Conn, string) {
	t.Helper()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := conn.Exec(ctx, m.Statement(db)); err != nil {
			t.Fatalf("migration %s: %v", m.Name, err)
		}
	}
	return conn, db
}

func catalogue(t testing.TB, src string) *pricing.Catalog {
	t.Helper()
	f, err := pricefile.Parse("acme.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pricing.New(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// v1 prices m1 at 1/2 USD per 1M tokens and does not know m2. v2 corrects m1's input price
// to 3 (with a cached price of 0.30) and adds m2. v3 cuts m1 to 2/2 from 2025-06-20.
const (
	v1 = `provider: acme
models:
  - model: m1
    prices: [{effective: 2025-01-01, input: "1", output: "2"}]
`
	v2 = `provider: acme
models:
  - model: m1
    prices: [{effective: 2025-01-01, input: "3", cached_input: "0.30", output: "2"}]
  - model: m2
    prices: [{effective: 2025-01-01, input: "10", output: "10"}]
`
	v3 = `provider: acme
models:
  - model: m1
    prices:
      - {effective: 2025-01-01, input: "3", cached_input: "0.30", output: "2"}
      - {effective: 2025-06-20, input: "2", cached_input: "0.20", output: "2"}
  - model: m2
    prices: [{effective: 2025-01-01, input: "10", output: "10"}]
`
)

type ev struct {
	id, model, team string
	at              time.Time
	tokens          event.Tokens
}

var (
	june15 = time.Date(2025, 6, 15, 10, 30, 15, 0, time.UTC)
	june25 = time.Date(2025, 6, 25, 8, 0, 0, 0, time.UTC)
	events = []ev{
		{"e1", "m1", "search", june15, event.Tokens{Input: 1000, CachedInput: 500, Output: 100}},
		{"e2", "M1-20250101", "search", june25, event.Tokens{Input: 2000, Output: 0}},
		{"e3", "m2", "support", june15, event.Tokens{Input: 100, Output: 100}},
		{"e4", "m1", "support", time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC), event.Tokens{Input: 1000, Output: 1000}}, // outside the range
	}
	june = Range{From: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)}
)

// insertEvents stores the events priced with cat, as the aggregator would.
func insertEvents(t *testing.T, conn driver.Conn, db string, cat *pricing.Catalog) {
	t.Helper()
	b, err := conn.PrepareBatch(context.Background(), `INSERT INTO `+db+`.usage_events (event_id, time, time_ms, ingested_at,
		provider, model, model_priced, team, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
		cache_write_1h_tokens, reasoning_tokens, cost_usd, savings_usd, priced, price_version, service_tier, cache_hit)`)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		q := cat.Price("acme", e.model, "", e.at, e.tokens, false)
		tk := e.tokens
		if err := b.Append(e.id, e.at, uint16(0), e.at, "acme", e.model, q.Model, e.team,
			uint64(tk.Input), uint64(tk.Output), uint64(tk.CachedInput), uint64(tk.CacheWrite), uint64(tk.CacheWrite1h), uint64(tk.Reasoning),
			usd(q.Cost), usd(q.Savings), boolToUInt8(q.Priced), q.Version, "standard", uint8(0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

// sums reads one row of Decimal sums and UInt64 counts.
func sums(t *testing.T, conn driver.Conn, query string) (cost pricefile.PicoUSD, n uint64, unpriced uint64) {
	t.Helper()
	var d decimal.Decimal
	if err := conn.QueryRow(context.Background(), query).Scan(&d, &n, &unpriced); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	p, err := pico(d)
	if err != nil {
		t.Fatal(err)
	}
	return p, n, unpriced
}

func TestRerateCorrectsCostsExactlyOnce(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	insertEvents(t, conn, db, catalogue(t, v1))

	// Under v1: e1 = 1000·1 + 100·2 = 1,200 µUSD; e2 = 2000·1 = 2,000; e3 unpriced; e4 = 3,000.
	const before = 1_200_000_000 + 2_000_000_000 + 3_000_000_000
	check := func(stage string, wantCost pricefile.PicoUSD, wantUnpriced uint64) {
		t.Helper()
		for _, q := range []string{
			"SELECT sum(cost_usd), toUInt64(sum(events)), toUInt64(sum(events * (priced = 0))) FROM " + db + ".usage_costs",
			"SELECT sum(cost_usd), sum(events), sum(unpriced_events) FROM " + db + ".spend_1m",
			"SELECT sum(cost_usd), sum(events), sum(unpriced_events) FROM " + db + ".spend_1d",
		} {
			cost, n, unpriced := sums(t, conn, q)
			if cost != wantCost || n != 4 || unpriced != wantUnpriced {
				t.Errorf("%s: %s\n = cost %s, events %d, unpriced %d; want %s, 4, %d", stage, q, cost, n, unpriced, wantCost, wantUnpriced)
			}
		}
		// usage_events itself never changes.
		if cost, n, unpriced := sums(t, conn, "SELECT sum(cost_usd), count(), sum(toUInt64(priced = 0)) FROM "+db+".usage_events"); cost != before || n != 4 || unpriced != 1 {
			t.Errorf("%s: usage_events = %s, %d, %d; want %s, 4, 1", stage, cost, n, unpriced, pricefile.PicoUSD(before))
		}
	}
	check("as first priced", before, 1)
	// The unknown model is listed, with its first and last minute.
	if got := chtest.String(t, conn, "SELECT concat(provider, ' ', model, ' ', toString(first_seen), ' ', toString(last_seen), ' ', toString(events), ' ', toString(input_tokens), ' ', toString(output_tokens)) FROM "+db+".unpriced_models"); got != "acme m2 2025-06-15 10:30:00 2025-06-15 10:30:00 1 100 100" {
		t.Errorf("unpriced_models = %q", got)
	}

	cat2 := catalogue(t, v2)
	plan, err := Compute(ctx, conn, db, cat2, june)
	if err != nil {
		t.Fatal(err)
	}
	// Under v2: e1 = 500·3 + 500·0.30 + 100·2 = 1,850 µUSD, savings 500·2.70; e2 = 6,000;
	// e3 = 100·10 + 100·10 = 2,000. e4 lies outside the range.
	want := []struct {
		id       string
		old, new State
	}{
		{"e1", State{"m1", true, 1_200_000_000, 0, "acme/m1@2025-01-01/standard"}, State{"m1", true, 1_850_000_000, 1_350_000_000, "acme/m1@2025-01-01/standard"}},
		{"e3", State{"", false, 0, 0, ""}, State{"m2", true, 2_000_000_000, 0, "acme/m2@2025-01-01/standard"}},
		{"e2", State{"m1", true, 2_000_000_000, 0, "acme/m1@2025-01-01/standard"}, State{"m1", true, 6_000_000_000, 0, "acme/m1@2025-01-01/standard"}},
	}
	if plan.Scanned != 3 || len(plan.Changes) != len(want) || plan.CatalogueVersion != cat2.Version() {
		t.Fatalf("plan: scanned %d, %d changes, catalogue %s; want 3, 3, %s", plan.Scanned, len(plan.Changes), plan.CatalogueVersion, cat2.Version())
	}
	for i, w := range want {
		c := plan.Changes[i]
		if c.EventID != w.id || c.Old != w.old || c.New != w.new {
			t.Errorf("change %d: %s %+v -> %+v\nwant %s %+v -> %+v", i, c.EventID, c.Old, c.New, w.id, w.old, w.new)
		}
	}
	diffs := plan.ByTeamAndModel()
	wantDiffs := []Diff{
		{"search", "M1-20250101", 1, 2_000_000_000, 6_000_000_000},
		{"support", "m2", 1, 0, 2_000_000_000},
		{"search", "m1", 1, 1_200_000_000, 1_850_000_000},
	}
	if len(diffs) != len(wantDiffs) {
		t.Fatalf("diffs %+v, want %+v", diffs, wantDiffs)
	}
	for i := range diffs {
		if diffs[i] != wantDiffs[i] {
			t.Errorf("diff %d = %+v, want %+v", i, diffs[i], wantDiffs[i])
		}
	}

	run := NewRun(time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC), cat2.Version(), "test", "v2 correction")
	if err := Apply(ctx, conn, db, plan, run); err != nil {
		t.Fatal(err)
	}
	after2 := pricefile.PicoUSD(1_850_000_000 + 6_000_000_000 + 2_000_000_000 + 3_000_000_000)
	check("after v2", after2, 0)
	if got := chtest.String(t, conn, "SELECT toString(count()) FROM "+db+".unpriced_models"); got != "0" {
		t.Errorf("unpriced_models after the model was priced and re-rated: %s rows, want 0", got)
	}
	// The corrected model is a dimension: e3's event moved from model_priced "" to "m2".
	if got := chtest.String(t, conn, "SELECT toString(sum(events)) FROM "+db+".spend_1m WHERE model_priced = ''"); got != "0" {
		t.Errorf("events still counted under model_priced '' = %s, want 0", got)
	}
	if got := chtest.String(t, conn, "SELECT toString(sum(events)) FROM "+db+".spend_1d WHERE model_priced = 'm2' AND team = 'support'"); got != "1" {
		t.Errorf("events under m2 = %s, want 1", got)
	}
	// Tokens move with the event and never double.
	if got := chtest.String(t, conn, "SELECT toString(sum(input_tokens)) FROM "+db+".spend_1m"); got != "4100" {
		t.Errorf("input tokens = %s, want 4100", got)
	}
	if got := chtest.String(t, conn, "SELECT concat(rerate_id, ' ', toString(events_scanned), ' ', toString(events_changed), ' ', catalogue_version) FROM "+db+".rerate_runs"); got != run.ID+" 3 3 "+cat2.Version() {
		t.Errorf("rerate_runs = %q", got)
	}

	// Exactly once: the same re-rating again changes nothing.
	again, err := Compute(ctx, conn, db, cat2, june)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changes) != 0 || again.Scanned != 3 {
		t.Fatalf("second pass with the same catalogue: %d changes of %d", len(again.Changes), again.Scanned)
	}

	// A later correction starts from the corrected costs: only e2 (after 2025-06-20) changes,
	// 6,000 -> 2000·2 = 4,000 µUSD.
	cat3 := catalogue(t, v3)
	plan3, err := Compute(ctx, conn, db, cat3, june)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan3.Changes) != 1 || plan3.Changes[0].EventID != "e2" || plan3.Changes[0].Old.Cost != 6_000_000_000 || plan3.Changes[0].New.Cost != 4_000_000_000 ||
		plan3.Changes[0].New.Version != "acme/m1@2025-06-20/standard" {
		t.Fatalf("third pass: %+v", plan3.Changes)
	}
	if err := Apply(ctx, conn, db, plan3, NewRun(time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC), cat3.Version(), "test", "")); err != nil {
		t.Fatal(err)
	}
	check("after v3", after2-2_000_000_000, 0)
	if got := chtest.String(t, conn, "SELECT toString(count()) FROM "+db+".cost_corrections"); got != "8" {
		t.Errorf("cost_corrections rows = %s, want 8 (two per change)", got)
	}
	// Each event's current cost from the view: e2 is now 4,000 µUSD.
	var d decimal.Decimal
	if err := conn.QueryRow(ctx, "SELECT sum(cost_usd) FROM "+db+".usage_costs WHERE event_id = 'e2'").Scan(&d); err != nil {
		t.Fatal(err)
	}
	if p, _ := pico(d); p != 4_000_000_000 {
		t.Errorf("e2 current cost = %s, want 0.004", d)
	}

	// A catalogue that cannot price the events any more never un-prices them.
	other := catalogue(t, `{provider: acme, models: [{model: m9, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`)
	p4, err := Compute(ctx, conn, db, other, june)
	if err != nil {
		t.Fatal(err)
	}
	if len(p4.Changes) != 0 || p4.Unpriceable != 3 {
		t.Errorf("catalogue without the models: %d changes, %d unpriceable; want 0, 3", len(p4.Changes), p4.Unpriceable)
	}
	// A new row with the same prices changes only versions: left alone.
	same := catalogue(t, `provider: acme
models:
  - model: m1
    prices:
      - {effective: 2025-01-01, input: "3", cached_input: "0.30", output: "2"}
      - {effective: 2025-06-20, input: "2", cached_input: "0.20", output: "2"}
      - {effective: 2025-06-24, input: "2", cached_input: "0.20", output: "2"}
  - model: m2
    prices: [{effective: 2025-01-01, input: "10", output: "10"}]
`)
	p5, err := Compute(ctx, conn, db, same, june)
	if err != nil {
		t.Fatal(err)
	}
	if len(p5.Changes) != 0 || p5.VersionOnly != 1 {
		t.Errorf("same prices under a new row: %d changes, %d version-only; want 0, 1", len(p5.Changes), p5.VersionOnly)
	}
}

// A report the aggregator displaced for a better report of the same call (a 'displaced' row
// in cost_corrections) no longer counts: re-rating it would put it back into the roll-ups.
func TestRerateSkipsDisplacedReports(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	insertEvents(t, conn, db, catalogue(t, v1))
	if err := conn.Exec(ctx, "INSERT INTO "+db+".cost_corrections (rerate_id, kind, event_id, time, events, cost_usd) "+
		"SELECT 'displaced', 'displaced', event_id, time, -1, -cost_usd FROM "+db+".usage_events WHERE event_id = 'e2'"); err != nil {
		t.Fatal(err)
	}
	plan, err := Compute(ctx, conn, db, catalogue(t, v2), june)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range plan.Changes {
		ids = append(ids, c.EventID)
	}
	if plan.Scanned != 2 || strings.Join(ids, ",") != "e1,e3" {
		t.Fatalf("plan: scanned %d, changes %v; want 2, [e1 e3] (e2 displaced)", plan.Scanned, ids)
	}
}

func TestRangeValidate(t *testing.T) {
	a := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		r    Range
		want string
	}{
		{Range{}, "range: both from and to are required"},
		{Range{From: a, To: a}, "range: from (2025-06-01T00:00:00Z) must be before to (2025-06-01T00:00:00Z)"},
		{Range{From: a.Add(time.Hour), To: a}, "range: from (2025-06-01T01:00:00Z) must be before to (2025-06-01T00:00:00Z)"},
	} {
		if err := tt.r.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("Validate(%v) = %v, want %s", tt.r, err, tt.want)
		}
	}
}

func TestPico(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want pricefile.PicoUSD
		ok   bool
	}{
		{"0.00475", 4_750_000_000, true},
		{"-1.5", -1_500_000_000_000, true},
		{"0.000000000001", 1, true},
		{"0.0000000000001", 0, false},
		{"1000001", 0, false},
	} {
		got, err := pico(decimal.RequireFromString(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("pico(%s) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// BenchmarkCompute re-rates 20,000 stored events and applies the corrections, ClickHouse
// reads and writes included; every pass changes every event (and adds to the corrections
// later passes read).
func BenchmarkCompute(b *testing.B) {
	conn := chtest.Conn(b)
	db := chtest.Database(b, conn)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		b.Fatal(err)
	}
	ms, err := chschema.Migrations()
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range ms {
		if err := conn.Exec(ctx, m.Statement(db)); err != nil {
			b.Fatal(err)
		}
	}
	const n = 20_000
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, provider, model, team, input_tokens, output_tokens, priced)")
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		at := june15.Add(time.Duration(i) * time.Second)
		if err := batch.Append(fmt.Sprintf("e%06d", i), at, "acme", "m2", "team"+strconv.Itoa(i%10), uint64(1000+i), uint64(100), uint8(0)); err != nil {
			b.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		b.Fatal(err)
	}
	// Alternating between two prices of m2 makes every pass change every event.
	cats := []*pricing.Catalog{catalogue(b, v2), catalogue(b, strings.Replace(v2, `input: "10"`, `input: "11"`, 1))}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cat := cats[i%2]
		plan, err := Compute(ctx, conn, db, cat, june)
		if err != nil {
			b.Fatal(err)
		}
		if len(plan.Changes) != n {
			b.Fatalf("pass %d: %d changes, want %d", i, len(plan.Changes), n)
		}
		if err := Apply(ctx, conn, db, plan, NewRun(time.Now(), cat.Version(), "bench", "")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/event")
}
