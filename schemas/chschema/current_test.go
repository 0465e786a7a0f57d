package chschema

import (
	"fmt"
	"testing"
)

// The current_ columns of workflow_costs, workflow_results, cache_savings and
// cache_write_payback (migrations 0072-0079) add the re-rating corrections of their events: on
// the cookbook's sample, wf-13's calls of 18 November re-rated at half price, and here also
// e05 (wf-3, acme-llm-7, stored unpriced) priced at $0.002 by a later pass.
func TestCurrentCosts(t *testing.T) {
	ch := newClickHouse(t)
	db := ch.freshDatabase()
	ch.migrate(db)
	for _, table := range []string{"usage_events", "outcomes", "cost_corrections"} {
		seed(t, ch, db, table)
	}
	ch.query(fmt.Sprintf("INSERT INTO %s.cost_corrections (rerate_id, applied_at, seq, kind, event_id, time, provider, model, model_priced, team, feature, env, events, cost_usd, priced, unpriced_events, price_version) FORMAT TabSeparated", db),
		"rr-2\t2026-11-21 09:00:00\t5\treverse\te05\t2026-11-03 12:00:00\tacme\tacme-llm-7\t\tsupport\ttriage\tprod\t-1\t0\t0\t-1\t\n"+
			"rr-2\t2026-11-21 09:00:00\t6\tapply\te05\t2026-11-03 12:00:00\tacme\tacme-llm-7\tacme-llm-7\tsupport\ttriage\tprod\t1\t0.002\t1\t0\tacme/acme-llm-7@2026-11-01/standard\n")
	for _, tc := range []struct{ sql, want string }{
		{"SELECT workflow_id, toString(cost_usd), toString(current_cost_usd), toString(savings_usd), toString(current_savings_usd), unpriced_events, current_unpriced_events " +
			"FROM %s.workflow_costs WHERE workflow_id IN ('wf-3', 'wf-8', 'wf-12', 'wf-13') ORDER BY workflow_id",
			"wf-12\t0.046500000000\t0.046500000000\t0.022500000000\t0.022500000000\t0\t0\n" +
				"wf-13\t0.028200000000\t0.014100000000\t0.010800000000\t0.005400000000\t0\t0\n" +
				"wf-3\t0.009900000000\t0.011900000000\t0.008100000000\t0.008100000000\t1\t0\n" +
				"wf-8\t0.022500000000\t0.022500000000\t0.000000000000\t0.000000000000\t1\t1\n"},
		{"SELECT workflow_id, outcome, toString(cost_usd), toString(current_cost_usd), current_unpriced_events FROM %s.workflow_results WHERE workflow_id IN ('wf-3', 'wf-13') ORDER BY workflow_id",
			"wf-13\t\t0.028200000000\t0.014100000000\t0\n" +
				"wf-3\tresolved\t0.009900000000\t0.011900000000\t0\n"},
		{"SELECT toString(day), team, prompt_version, toString(cost_usd), toString(current_cost_usd), toString(prompt_cache_savings_usd), toString(current_prompt_cache_savings_usd), toString(current_app_cache_savings_usd) " +
			"FROM %s.cache_savings WHERE day IN (toDate('2026-11-03'), toDate('2026-11-18')) ORDER BY day, team, prompt_version",
			"2026-11-03\tsupport\ttriage@v1\t0.009900000000\t0.011900000000\t0.008100000000\t0.008100000000\t0.000000000000\n" +
				"2026-11-18\tsearch\tchat@v4\t0.016500000000\t0.016500000000\t0.000000000000\t0.000000000000\t0.000000000000\n" +
				"2026-11-18\tsupport\ttriage@v2\t0.028200000000\t0.014100000000\t0.010800000000\t0.005400000000\t0.000000000000\n"},
		// 18 Nov, triage@v2: 4,000 five-minute tokens written, 4,000 read. First priced the reads
		// saved $0.0108, so the input price is $3/M and the writes cost 4,000 × $0.75/M extra;
		// re-rated at half price, both halve.
		{"SELECT toString(day), prompt_version, toString(read_savings_usd), toString(write_5m_extra_usd), toString(net_savings_usd), " +
			"toString(current_read_savings_usd), toString(current_write_1h_extra_usd), toString(current_write_5m_extra_usd), toString(current_net_savings_usd), paid_back " +
			"FROM %s.cache_write_payback WHERE day >= toDate('2026-11-16') ORDER BY day, prompt_version",
			"2026-11-16\ttriage@v2\t0.021600000000\t0.000000000000\t0.009600000000\t0.021600000000\t0.012000000000\t0.000000000000\t0.009600000000\t1\n" +
				"2026-11-17\tchat@v4\t0.013500000000\t0.000000000000\t-0.001500000000\t0.013500000000\t0.015000000000\t0.000000000000\t-0.001500000000\t0\n" +
				"2026-11-18\tchat@v4\t0.000000000000\t0.000000000000\t0.000000000000\t0.000000000000\t0.000000000000\t0.000000000000\t0.000000000000\t0\n" +
				"2026-11-18\ttriage@v2\t0.010800000000\t0.003000000000\t0.007800000000\t0.005400000000\t0.000000000000\t0.001500000000\t0.003900000000\t1\n"},
	} {
		sql := fmt.Sprintf(tc.sql, db)
		if got := ch.query(sql, ""); got != tc.want {
			t.Errorf("%s\ngot\n%s\nwant\n%s", sql, got, tc.want)
		}
	}
}
