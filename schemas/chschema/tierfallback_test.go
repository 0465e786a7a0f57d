package chschema

import (
	"fmt"
	"testing"
)

// usage_events.tier_fallback flags events priced at standard prices for want of a price of
// their tier, on rows inserted after migration 0070 and, computed at read, on rows from before
// it; tier_fallbacks lists them. The price versions are those batch.TestTierFallback checks.
func TestTierFallback(t *testing.T) {
	ch := newClickHouse(t)
	db := ch.freshDatabase()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	const insert = "INSERT INTO %s.usage_events (event_id, time, provider, model, model_priced, partition, priced, service_tier, price_version, cost_usd) FORMAT TabSeparated"
	applied := false
	for _, m := range ms {
		if m.Version >= 70 && !applied {
			// A row stored before the column existed.
			ch.query(fmt.Sprintf(insert, db), "old\t2026-11-30 09:00:00\topenai\tgpt-4o\tgpt-4o\t1\t1\tflex\topenai/gpt-4o@2024-10-01/standard\t0.5\n")
			applied = true
		}
		ch.query(m.Statement(db), "")
	}
	ch.query(fmt.Sprintf(insert, db),
		"a\t2026-12-01 10:00:00\topenai\tgpt-4o\tgpt-4o\t3\t1\tbatch\topenai/gpt-4o@2024-10-01/standard\t1.5\n"+
			"b\t2026-12-01 10:00:10\topenai\tgpt-4o\tgpt-4o\t3\t1\tbatch\topenai/gpt-4o@2024-10-01/batch\t1\n"+
			"c\t2026-12-01 10:00:20\topenai\tgpt-4o\tgpt-4o\t3\t1\tstandard\topenai/gpt-4o@2024-10-01/standard\t2\n"+
			"d\t2026-12-01 10:00:30\tgoogle\tclaude-sonnet-4-5@20250929\tclaude-sonnet-4-5\t3\t1\tpriority\tgoogle/claude-sonnet-4-5@20250929@2025-09-29/standard/long\t3\n"+
			"e\t2026-12-01 10:00:40\topenai\tgpt-9\t\t3\t0\tbatch\t\t0\n"+
			"f\t2026-12-01 10:00:50\topenai\to3\to3\t3\t1\tflex\topenai/o3@2025-06-10/flex/long/discount=12.5%@2026-01-01\t4\n"+
			"g\t2026-12-01 11:00:00\topenai\tgpt-4o\tgpt-4o\t3\t1\tbatch\topenai/gpt-4o@2024-10-01/standard/org\t2.25\n")
	// Only the correction rows matter here, not the roll-ups the correction views fill.
	for _, mv := range []string{"spend_1m_corrections_mv", "spend_1d_corrections_mv"} {
		ch.query("DROP TABLE IF EXISTS "+db+"."+mv, "")
	}
	// Event d re-rated (with the same price: only the correction's existence counts here).
	ch.query(fmt.Sprintf("INSERT INTO %s.cost_corrections (rerate_id, seq, kind, event_id, time, provider, model, model_priced, events, price_version) FORMAT TabSeparated", db),
		"r1\t1\treverse\td\t2026-12-01 10:00:30\tgoogle\tclaude-sonnet-4-5@20250929\tclaude-sonnet-4-5\t-1\tgoogle/claude-sonnet-4-5@20250929@2025-09-29/standard/long\n"+
			"r1\t2\tapply\td\t2026-12-01 10:00:30\tgoogle\tclaude-sonnet-4-5@20250929\tclaude-sonnet-4-5\t1\tgoogle/claude-sonnet-4-5@20250929@2025-09-29/standard/long\n")
	for _, tc := range []struct{ sql, want string }{
		{fmt.Sprintf("SELECT event_id, tier_fallback FROM %s.usage_events ORDER BY event_id", db),
			"a\t1\nb\t0\nc\t0\nd\t1\ne\t0\nf\t0\ng\t1\nold\t1\n"},
		{fmt.Sprintf("SELECT toString(day), provider, model, model_priced, service_tier, price_version, events, toString(cost_usd), rerated_events FROM %s.tier_fallbacks ORDER BY day, provider, model, price_version", db),
			"2026-11-30\topenai\tgpt-4o\tgpt-4o\tflex\topenai/gpt-4o@2024-10-01/standard\t1\t0.500000000000\t0\n" +
				"2026-12-01\tgoogle\tclaude-sonnet-4-5@20250929\tclaude-sonnet-4-5\tpriority\tgoogle/claude-sonnet-4-5@20250929@2025-09-29/standard/long\t1\t3.000000000000\t1\n" +
				"2026-12-01\topenai\tgpt-4o\tgpt-4o\tbatch\topenai/gpt-4o@2024-10-01/standard\t1\t1.500000000000\t0\n" +
				"2026-12-01\topenai\tgpt-4o\tgpt-4o\tbatch\topenai/gpt-4o@2024-10-01/standard/org\t1\t2.250000000000\t0\n"},
		// The roll-ups are untouched by the new column.
		{fmt.Sprintf("SELECT sum(events), toString(sum(cost_usd)) FROM %s.spend_1m", db), "8\t14.250000000000\n"},
	} {
		if got := ch.query(tc.sql, ""); got != tc.want {
			t.Errorf("%s\ngot\n%s\nwant\n%s", tc.sql, got, tc.want)
		}
	}
}
