package dedup

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func fingerprintRow() batch.Row {
	return batch.Row{
		ID: "evt-1", Time: time.Date(2026, 11, 26, 10, 30, 5, 123e6, time.UTC), Received: time.Date(2026, 11, 26, 10, 31, 0, 0, time.UTC),
		Provider: "anthropic", Model: "claude-sonnet-4-5", Operation: "chat", ServiceTier: "batch", Status: "ok",
		Tokens: event.Tokens{Input: 5000, Output: 800, CachedInput: 1000, CacheWrite: 2000, CacheWrite1h: 500, Reasoning: 300},
		Team:   "search", Feature: "summarize", Env: "prod", CostCenter: "cc-1", Traffic: "user",
		Priced: true, ModelPriced: "claude-sonnet-4-5", PriceVersion: "anthropic/claude-sonnet-4-5@2025-09-29/batch", CostPico: 123456789,
	}
}

// TestFingerprintCoversContentNotPrice: every field of the content changes the fingerprint;
// what the enricher derives (price, cost) and what is not money or attribution do not.
func TestFingerprintCoversContentNotPrice(t *testing.T) {
	base := fingerprintRow()
	want := Fingerprint(&base)
	for name, edit := range map[string]func(*batch.Row){
		"time":           func(r *batch.Row) { r.Time = r.Time.Add(time.Second) },
		"time ms":        func(r *batch.Row) { r.Time = r.Time.Add(time.Millisecond) },
		"provider":       func(r *batch.Row) { r.Provider = "openai" },
		"model":          func(r *batch.Row) { r.Model = "claude-opus-4-1" },
		"tier":           func(r *batch.Row) { r.ServiceTier = "standard" },
		"team":           func(r *batch.Row) { r.Team = "support" },
		"feature":        func(r *batch.Row) { r.Feature = "chat" },
		"env":            func(r *batch.Row) { r.Env = "dev" },
		"cost center":    func(r *batch.Row) { r.CostCenter = "cc-2" },
		"traffic":        func(r *batch.Row) { r.Traffic = "background" },
		"input":          func(r *batch.Row) { r.Tokens.Input++ },
		"output":         func(r *batch.Row) { r.Tokens.Output++ },
		"cached input":   func(r *batch.Row) { r.Tokens.CachedInput++ },
		"cache write":    func(r *batch.Row) { r.Tokens.CacheWrite++ },
		"cache write 1h": func(r *batch.Row) { r.Tokens.CacheWrite1h++ },
		"reasoning":      func(r *batch.Row) { r.Tokens.Reasoning++ },
		"cache hit":      func(r *batch.Row) { r.CacheHit = true },
		// Moving text between neighbouring fields must not collide.
		"team/feature boundary": func(r *batch.Row) { r.Team, r.Feature = "searchs", "ummarize" },
	} {
		r := fingerprintRow()
		edit(&r)
		if got := Fingerprint(&r); got == want {
			t.Errorf("changing the %s leaves the fingerprint at %d", name, got)
		}
	}
	for name, edit := range map[string]func(*batch.Row){
		"cost":          func(r *batch.Row) { r.CostPico = 1 },
		"price version": func(r *batch.Row) { r.PriceVersion = "anthropic/claude-sonnet-4-5@2026-01-01/batch" },
		"received":      func(r *batch.Row) { r.Received = r.Received.Add(time.Hour) },
		"latency":       func(r *batch.Row) { r.LatencyMS = 99 },
	} {
		r := fingerprintRow()
		edit(&r)
		if got := Fingerprint(&r); got != want {
			t.Errorf("changing the %s changes the fingerprint from %d to %d", name, want, got)
		}
	}
}

// TestFingerprintEqualsClickHouseColumn: the fingerprint computed in Go is the content_fp
// ClickHouse stores, for ordinary rows and for edge values (epoch start, empty strings,
// multi-byte text, the largest token counts).
func TestFingerprintEqualsClickHouseColumn(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	rows := []batch.Row{fingerprintRow()}
	edge := fingerprintRow()
	edge.ID, edge.Time, edge.Team, edge.Feature, edge.Env, edge.CostCenter, edge.Traffic = "evt-edge", time.Unix(0, 999e6).UTC(), "", "", "", "", ""
	edge.Model, edge.CacheHit = "modèle-ü-模型", true
	edge.Tokens = event.Tokens{Input: event.DefaultLimits.MaxTokens, Output: event.DefaultLimits.MaxTokens, CachedInput: event.DefaultLimits.MaxTokens, Reasoning: event.DefaultLimits.MaxTokens}
	rows = append(rows, edge)
	for i := range 50 {
		r := fingerprintRow()
		r.ID = "evt-n" + strconv.Itoa(i)
		r.Time = r.Time.Add(time.Duration(i) * 7919 * time.Millisecond)
		r.Tokens.Input += int64(i)
		rows = append(rows, r)
	}
	if err := seedInserter(t, db).Insert(ctx, 0, rows); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for i := range rows {
		want[rows[i].ID] = Fingerprint(&rows[i])
	}
	res, err := conn.Query(ctx, "SELECT event_id, content_fp FROM "+db+".usage_events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	n := 0
	for res.Next() {
		var id string
		var fp uint64
		if err := res.Scan(&id, &fp); err != nil {
			t.Fatal(err)
		}
		n++
		if fp != want[id] {
			t.Errorf("%s: ClickHouse content_fp %d, Fingerprint %d", id, fp, want[id])
		}
	}
	if n != len(rows) {
		t.Fatalf("read %d rows back, want %d", n, len(rows))
	}
}

// seedInserter writes rows straight to ClickHouse, as the aggregator would.
func seedInserter(tb testing.TB, db string) *chwrite.Inserter {
	tb.Helper()
	in, err := chwrite.NewInserterForDSN(chtest.DSN(), db)
	if err != nil {
		tb.Fatal(err)
	}
	return in
}
