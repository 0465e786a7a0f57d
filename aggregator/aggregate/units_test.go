package aggregate

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// A report with units that a better report of the same call displaces takes its units out of
// unit_spend_1m and unit_spend_1d with it: the roll-ups count the better report's units only.
func TestDisplacedReportTakesItsUnits(t *testing.T) {
	e := newEnv(t)
	e.start(t, nil)
	rid := "chatcmpl-units"
	sdk := report("sdk-units-1", "openai", rid, 21_000_000_000)
	sdk.Units = []batch.Unit{{Key: "web_search_calls", Count: 2, CostPico: 20_000_000_000}}
	e.publish(t, sdk)
	waitFor(t, "the anonymous report written", func() bool { return e.count(t) == "1" })

	proxy := report("proxy-openai-"+rid, "openai", rid, 34_750_000_000)
	proxy.Source = batch.SourceProxy
	proxy.Units = []batch.Unit{{Key: "image_outputs:1024x1024:low", Count: 1, CostPico: 0},
		{Key: "web_search_calls", Count: 3, CostPico: 30_000_000_000}}
	e.publish(t, proxy)
	waitFor(t, "the proxy's report written", func() bool { return e.count(t) == "2" })
	e.waitDrained(t)

	for _, table := range []string{"unit_spend_1m", "unit_spend_1d"} {
		q := "SELECT arrayStringConcat(groupArray(line), ';') FROM (SELECT concat(unit, ' ', toString(sum(events)), ' ', toString(sum(units)), ' ', toString(sum(cost_usd))) AS line FROM {db}." +
			table + " GROUP BY unit ORDER BY unit)"
		if got, want := e.query(t, q), "image_outputs:1024x1024:low 1 1 0.000000000000;web_search_calls 1 3 0.030000000000"; got != want {
			t.Errorf("%s = %s, want %s (the proxy's units alone)", table, got, want)
		}
	}
	if got, want := e.query(t, "SELECT concat(kind, ':', event_id, ':', arrayStringConcat(unit_keys, ','), ':', arrayStringConcat(arrayMap(n -> toString(n), unit_counts), ','), ':', arrayStringConcat(arrayMap(c -> toString(c), unit_costs_usd), ',')) FROM {db}.cost_corrections"),
		"displaced:sdk-units-1:web_search_calls:-2:-0.020000000000"; got != want {
		t.Errorf("cost_corrections = %s, want %s", got, want)
	}
}

// An INSERT that fails after usage_events took its rows but before the views did (as in
// TestUncertainInsertIsRepairedByTheWriter) leaves the unit roll-ups short too: the writer adds
// what they lack, per unit key, so they agree with the units of usage_events.
func TestUnitRollupsAreRepairedByTheWriter(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	e.exec(t, "CREATE MATERIALIZED VIEW "+e.db+".a_fail_mv ENGINE = Memory AS SELECT throwIf(cost_usd > 0) AS failed FROM "+e.db+".usage_events")
	now := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	var rows []batch.Row
	for i, p := range []int{0, 0, 1} {
		r := row(idOnPartition("evt_units_"+string(rune('a'+i)), p), now.Add(time.Duration(i)*time.Second), int64(i+1)*10_000_000_000)
		r.Units = []batch.Unit{{Key: "web_search_calls", Count: int64(i + 1), CostPico: int64(i+1) * 10_000_000_000}}
		rows = append(rows, r)
	}
	rows[2].Units = append([]batch.Unit{{Key: "requests", Count: 7}}, rows[2].Units...)
	e.publish(t, rows...)
	waitFor(t, "an INSERT to fail", func() bool { return testutil.ToFloat64(a.m.inserts.WithLabelValues("error")) >= 2 })
	e.exec(t, "DROP TABLE "+e.db+".a_fail_mv")
	e.waitDrained(t)

	for _, table := range []string{"unit_spend_1m", "unit_spend_1d"} {
		q := "SELECT arrayStringConcat(groupArray(line), ';') FROM (SELECT concat(partition, ' ', unit, ' ', toString(sum(events)), ' ', toString(sum(units)), ' ', toString(sum(cost_usd))) AS line FROM {db}." +
			table + " GROUP BY partition, unit ORDER BY partition, unit)"
		if got, want := e.query(t, q), "0 web_search_calls 2 3 0.030000000000;1 requests 1 7 0.000000000000;1 web_search_calls 1 3 0.030000000000"; got != want {
			t.Errorf("%s = %s, want %s", table, got, want)
		}
		// One group per partition and key: three correction rows.
		if got := testutil.ToFloat64(a.m.repairs.WithLabelValues(table)); got != 3 {
			t.Errorf("repairs{table=%q} = %v, want 3", table, got)
		}
	}
}
