package chwrite

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/aggregator/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chtest"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

func rows(n int, received time.Time) []batch.Row {
	rs := make([]batch.Row, n)
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	teams := []string{"search", "ads", "support", "infra"}
	for i := range rs {
		rs[i] = batch.Row{
			ID: fmt.Sprintf("evt_%010d", i), Time: start.Add(time.Duration(i) * 137 * time.Millisecond), Received: received,
			Provider: "openai", Model: "gpt-4o", Operation: "chat",
			Tokens:      event.Tokens{Input: int64(1000 + i%500), Output: int64(200 + i%100), CachedInput: int64(i % 300)},
			ServiceTier: "standard", ResponseID: fmt.Sprintf("chatcmpl-%d", i), Status: "ok", LatencyMS: 850,
			Team: teams[i%len(teams)], Feature: "summarize", Env: "prod", CostCenter: "cc-42", Traffic: "user",
			WorkflowID: "ticket-4711", PromptVersion: "summarize@v7",
			Priced: true, ModelPriced: "gpt-4o-2024-08-06", PriceVersion: "2026-11-01",
			CostPico: int64(4_250_000_000 + i), SavingsPico: 1_250_000_000,
		}
		if i%10 == 0 {
			rs[i].ExtraTags = []batch.Tag{{Key: "customer", Value: "acme"}}
		}
	}
	return rs
}

func TestInsertThenLookUp(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	w := New(conn, db)
	received := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rs := rows(2500, received)
	if err := w.Insert(ctx, 3, rs[:2000]); err != nil {
		t.Fatal(err)
	}
	// Sum of 4_250_000_000 + i pico for i < 2000 = 8_500_000_000_000 + 1_999_000 pico.
	if got, want := chtest.String(t, conn, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd)), ' ', toString(sum(length(tag_keys)))) FROM "+db+".usage_events"), "2000 8.500001999000 200"; got != want {
		t.Fatalf("after Insert: count, sum(cost_usd), tags = %s, want %s", got, want)
	}

	n := 0
	if err := w.IDs(ctx, 3, received, func(string, time.Time) { n++ }); err != nil || n != 2000 {
		t.Fatalf("IDs(partition 3, since received) found %d ids (err %v), want 2000", n, err)
	}
	n = 0
	if err := w.IDs(ctx, 2, received, func(string, time.Time) { n++ }); err != nil || n != 0 {
		t.Fatalf("IDs(partition 2) found %d ids (err %v), want 0", n, err)
	}

	// More ids than one lookup query takes: 1990..2009, spread across two chunks.
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	var found []string
	if err := w.Existing(ctx, 3, ids[1000:2010], func(id string) { found = append(found, id) }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(found)
	if len(found) != 1000 || found[0] != ids[1000] || found[999] != ids[1999] {
		t.Fatalf("Existing found %d ids from %v to %v, want the 1000 ids %s..%s", len(found), found[0], found[len(found)-1], ids[1000], ids[1999])
	}
}

func BenchmarkInsert(b *testing.B) {
	conn := chtest.Conn(b)
	db := chtest.Database(b, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{50_000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			rs := rows(n, time.Now().UTC())
			w := New(conn, db)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := w.Insert(ctx, 0, rs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
