package chschema

import (
	"fmt"
	"testing"
)

// TestMeteredShare: events the proxy estimated (usage_events.estimated, migration 0101) show in
// metered_share per day, provider, model, team and feature, and in billing_reconciliation per
// day, provider and model; an estimate displaced by a measured report of the same call counts
// in neither.
func TestMeteredShare(t *testing.T) {
	ch := newClickHouse(t)
	db := ch.freshDatabase()
	ch.migrate(db)
	// 3 Nov, gpt-4o: search measured 2 calls and had 1 estimated (a cut stream); support had
	// 1 estimated call whose measured report came later (x4 displaced by x5).
	ch.query(fmt.Sprintf("INSERT INTO %s.usage_events (event_id, time, provider, model, team, feature, input_tokens, output_tokens, cost_usd, priced, estimated, estimate_reason) FORMAT TabSeparated", db),
		"x1\t2026-11-03 10:00:00\topenai\tgpt-4o\tsearch\tsummarize\t1000\t100\t0.003500000000\t1\t0\t\n"+
			"x2\t2026-11-03 11:00:00\topenai\tgpt-4o\tsearch\tsummarize\t2000\t200\t0.007000000000\t1\t0\t\n"+
			"x3\t2026-11-03 12:00:00\topenai\tgpt-4o\tsearch\tsummarize\t800\t40\t0.002400000000\t1\t1\tcut_stream\n"+
			"x4\t2026-11-03 13:00:00\topenai\tgpt-4o\tsupport\ttriage\t400\t0\t0.001000000000\t1\t1\tupstream_timeout\n"+
			"x5\t2026-11-03 13:00:00\topenai\tgpt-4o\tsupport\ttriage\t420\t310\t0.004150000000\t1\t0\t\n")
	ch.query(fmt.Sprintf("INSERT INTO %s.cost_corrections (rerate_id, applied_at, seq, kind, event_id, time, provider, model, model_priced, team, feature, env, events, cost_usd, priced, unpriced_events, price_version) FORMAT TabSeparated", db),
		"\t2026-11-03 13:00:05\t1\tdisplaced\tx4\t2026-11-03 13:00:00\topenai\tgpt-4o\t\tsupport\ttriage\t\t-1\t-0.001000000000\t1\t0\t\n")
	ch.query(fmt.Sprintf("INSERT INTO %s.provider_usage_rows (day, source, provider, model, token_class, tokens, cost_usd, import_id, import_version) FORMAT TabSeparated", db),
		"2026-11-03\topenai_api\topenai\tgpt-4o\toutput\t650\t0.017000000000\ti1\t1\n")
	ch.query(fmt.Sprintf("INSERT INTO %s.provider_usage_imports (source, day, import_id, import_version, imported_at, rows, complete) FORMAT TabSeparated", db),
		"openai_api\t2026-11-03\ti1\t1\t2026-11-04 06:00:00\t1\t1\n")
	for _, tc := range []struct{ sql, want string }{
		{"SELECT toString(day), provider, model, team, feature, events, estimated_events, unpriced_events, toString(cost_usd), toString(estimated_cost_usd), toString(metered_share) " +
			"FROM %s.metered_share ORDER BY team",
			"2026-11-03\topenai\tgpt-4o\tsearch\tsummarize\t3\t1\t0\t0.012900000000\t0.002400000000\t0.666666666666\n" +
				"2026-11-03\topenai\tgpt-4o\tsupport\ttriage\t1\t0\t0\t0.004150000000\t0.000000000000\t1.000000000000\n"},
		{"SELECT toString(day), provider, model, metered_events, metered_estimated_events, toString(metered_estimated_cost_usd), toString(metered_share), " +
			"toString(metered_cost_usd), toString(billed_cost_usd), billed_output_tokens, metered_output_tokens FROM %s.billing_reconciliation",
			"2026-11-03\topenai\tgpt-4o\t4\t1\t0.002400000000\t0.750000000000\t0.017050000000\t0.017000000000\t650\t650\n"},
	} {
		sql := fmt.Sprintf(tc.sql, db)
		if got := ch.query(sql, ""); got != tc.want {
			t.Errorf("%s\ngot\n%s\nwant\n%s", sql, got, tc.want)
		}
	}
}
