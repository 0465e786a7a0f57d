// Package summarytest seeds a fresh ClickHouse database with a small, fixed set of priced and
// unpriced events, so that the spend summaries, the dashboard, the Grafana dashboards and the
// showback export can all be tested against the same numbers.
//
// The seeded data, relative to Now (2026-11-20 12:00 UTC); cost in USD:
//
//	id   time (UTC)           provider   model (priced as)                   team     feature    env      cost_center  in/out tokens  cost            savings
//	e1   2026-11-20 10:00     openai     gpt-4o-2024-08-06 (gpt-4o)          search   summarize  prod     cc-search    1000/100       1.5             0
//	e2   2026-11-20 11:00     anthropic  claude-sonnet-4-5                   support  chat       prod     cc-support   2000/200       2.25            0
//	e3   2026-11-19 09:00     openai     gpt-4o                              search   summarize  prod     cc-search    500/50         0.75            0
//	e4   2026-11-18 08:00     acme       acme-llm-7 (unpriced)               search                                    10/10          0               0
//	e5   2026-11-16 12:00     openai     gpt-4o                                                  dev                   300/30         0.5             0
//	e6   2026-11-10 12:00     anthropic  claude-sonnet-4-5                   support  chat       prod     cc-support   4000/400       4               0
//	e7   2026-11-08 12:00     openai     gpt-4o                              search   summarize  prod     cc-search    1000/100       1               0
//	e8   2026-10-31 23:59:59  openai     gpt-4o                              search   summarize  prod     cc-search    9000/900       100             0
//	e9   2026-11-01 00:00:00  anthropic  claude-sonnet-4-5                   support  chat       staging  cc-support   1/1            0.000000000001  0
//	e10  2026-11-20 11:30     openai     gpt-4o                              search   summarize  prod     cc-search    800/80         0.25            0.1
//
// Other tags: e1 region=eu, e2 region=us, e10 region=eu and tier=gold.
package summarytest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// Now is the moment the seeded data is read at: 2026-11-20 12:00 UTC.
func Now() time.Time { return time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC) }

// Event is one seeded event.
type Event struct {
	ID                                      string
	Time                                    time.Time
	Provider, Model, ModelPriced            string
	Team, Feature, Env, CostCenter, Traffic string
	Input, Output                           uint64
	Cost, Savings                           string
	// Tags are the event's other tags, "key=value", sorted by key.
	Tags []string
}

// Events returns the seeded events (see the package documentation).
func Events() []Event {
	at := func(month time.Month, day, hour, minute, second int) time.Time {
		return time.Date(2026, month, day, hour, minute, second, 0, time.UTC)
	}
	return []Event{
		{"e1", at(time.November, 20, 10, 0, 0), "openai", "gpt-4o-2024-08-06", "gpt-4o", "search", "summarize", "prod", "cc-search", "user", 1000, 100, "1.5", "0", []string{"region=eu"}},
		{"e2", at(time.November, 20, 11, 0, 0), "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", "support", "chat", "prod", "cc-support", "user", 2000, 200, "2.25", "0", []string{"region=us"}},
		{"e3", at(time.November, 19, 9, 0, 0), "openai", "gpt-4o", "gpt-4o", "search", "summarize", "prod", "cc-search", "user", 500, 50, "0.75", "0", nil},
		{"e4", at(time.November, 18, 8, 0, 0), "acme", "acme-llm-7", "", "search", "", "", "", "", 10, 10, "0", "0", nil},
		{"e5", at(time.November, 16, 12, 0, 0), "openai", "gpt-4o", "gpt-4o", "", "", "dev", "", "background", 300, 30, "0.5", "0", nil},
		{"e6", at(time.November, 10, 12, 0, 0), "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", "support", "chat", "prod", "cc-support", "user", 4000, 400, "4", "0", nil},
		{"e7", at(time.November, 8, 12, 0, 0), "openai", "gpt-4o", "gpt-4o", "search", "summarize", "prod", "cc-search", "user", 1000, 100, "1", "0", nil},
		{"e8", at(time.October, 31, 23, 59, 59), "openai", "gpt-4o", "gpt-4o", "search", "summarize", "prod", "cc-search", "user", 9000, 900, "100", "0", nil},
		{"e9", at(time.November, 1, 0, 0, 0), "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", "support", "chat", "staging", "cc-support", "user", 1, 1, "0.000000000001", "0", nil},
		{"e10", at(time.November, 20, 11, 30, 0), "openai", "gpt-4o", "gpt-4o", "search", "summarize", "prod", "cc-search", "user", 800, 80, "0.25", "0.1", []string{"region=eu", "tier=gold"}},
	}
}

// Seed creates a fresh database (dropped when the test ends) with tokenmeter's schema, inserts
// events into usage_events (the materialized views fill spend_1m and spend_1d) and returns its
// name.
func Seed(tb testing.TB, conn driver.Conn, events []Event) string {
	tb.Helper()
	ctx := context.Background()
	db := chtest.Database(tb, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		tb.Fatalf("apply migrations to %s: %v", db, err)
	}
	Insert(tb, conn, db, events)
	return db
}

// Insert adds events to db.usage_events.
func Insert(tb testing.TB, conn driver.Conn, db string, events []Event) {
	tb.Helper()
	ctx := context.Background()
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, ingested_at, provider, model, model_priced, team, feature, env, cost_center, traffic, tag_keys, tag_values, input_tokens, output_tokens, cost_usd, savings_usd, priced)")
	if err != nil {
		tb.Fatalf("prepare insert into %s.usage_events: %v", db, err)
	}
	for _, e := range events {
		priced := uint8(0)
		if e.ModelPriced != "" {
			priced = 1
		}
		keys, values := []string{}, []string{}
		for _, kv := range e.Tags {
			k, v, _ := strings.Cut(kv, "=")
			keys, values = append(keys, k), append(values, v)
		}
		if err := b.Append(e.ID, e.Time, e.Time, e.Provider, e.Model, e.ModelPriced, e.Team, e.Feature, e.Env, e.CostCenter, e.Traffic,
			keys, values, e.Input, e.Output, decimal.RequireFromString(e.Cost), decimal.RequireFromString(e.Savings), priced); err != nil {
			tb.Fatalf("append event %s: %v", e.ID, err)
		}
	}
	if err := b.Send(); err != nil {
		tb.Fatalf("insert %d events into %s.usage_events: %v", len(events), db, err)
	}
}
