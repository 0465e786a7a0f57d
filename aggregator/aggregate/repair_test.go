package aggregate

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
)

// disagreement lists, per partition and minute (day), where spend_1m (spend_1d) differs from
// usage_events in events, input tokens or cost; "" when they agree everywhere but in the
// minute except of spend_1m (rows from before migration 0064, which the writers leave alone).
func (e *env) disagreement(tb testing.TB, except string) string {
	tb.Helper()
	var out string
	for _, r := range rollups {
		keep := "1"
		if r.column == "minute" {
			keep = "toString(toStartOfMinute(time)) != '" + except + "'"
		}
		q := `SELECT arrayStringConcat(groupArray(s), '; ') FROM (SELECT concat(p, ' ', toString(u), ' ', toString(ev), ' ', toString(tok), ' ', toString(cost)) AS s FROM (
			SELECT p, u, sum(ev) AS ev, sum(tok) AS tok, sum(cost) AS cost FROM (
				SELECT toString(partition) AS p, ` + r.of + ` AS u, toInt64(count()) AS ev, toInt64(sum(input_tokens)) AS tok, sum(cost_usd) AS cost
				FROM {db}.usage_events WHERE ` + keep + ` GROUP BY p, u
				UNION ALL
				SELECT partition AS p, ` + r.column + ` AS u, -toInt64(sum(events)) AS ev, -toInt64(sum(input_tokens)) AS tok, -sum(cost_usd) AS cost
				FROM {db}.` + r.table + ` WHERE partition != '' GROUP BY p, u)
			GROUP BY p, u HAVING ev != 0 OR tok != 0 OR cost != 0 ORDER BY p, u))`
		if got := e.query(tb, q); got != "" {
			out += r.table + ": " + got + "\n"
		}
	}
	return out
}

// statement returns migration version's statement for the test's database.
func (e *env) statement(tb testing.TB, version uint32) string {
	tb.Helper()
	ms, err := chschema.Migrations()
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range ms {
		if m.Version == version {
			return m.Statement(e.db)
		}
	}
	tb.Fatalf("no migration %d", version)
	return ""
}

func (e *env) exec(tb testing.TB, q string) {
	tb.Helper()
	if err := e.conn.Exec(context.Background(), q); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

// insertBypassing writes rows to usage_events, of their partitions, while the view of migration
// mv is away: the state a crash between the table's part and that view's leaves.
func (e *env) insertBypassing(tb testing.TB, mv uint32, name string, rows ...batch.Row) {
	tb.Helper()
	e.exec(tb, "DROP TABLE "+e.db+"."+name)
	for _, r := range rows {
		if err := seedInserter(tb, e.db).Insert(context.Background(), r.Partition, []batch.Row{r}); err != nil {
			tb.Fatal(err)
		}
	}
	e.exec(tb, e.statement(tb, mv))
}

// A writer that takes over its partition repairs the roll-ups of the events written within
// the window: those a crash left short (spend_1m for the first four events, spend_1d for the
// last two) get the missing sums, and a roll-up holding more than usage_events (a row too
// many in spend_1d) gets the excess taken out. Re-rating's rows (partition ”) are not the
// writers' business, and a minute holding roll-up rows from before migration 0064 cannot be
// compared per partition: it is left alone and counted.
func TestRollupsAreRepairedAtStartUp(t *testing.T) {
	e := newEnv(t)
	if _, err := migrate.Apply(context.Background(), e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	at := func(hhmm string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04:05", "2026-11-26 "+hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	const usd = 1_000_000_000_000
	mk := func(prefix string, p int, tm time.Time, cost int64) batch.Row {
		r := row(idOnPartition(prefix, p), tm, cost)
		r.Partition = p
		return r
	}
	rows := []batch.Row{
		mk("evt_r0", 0, at("22:41:05"), 1*usd),
		mk("evt_r1", 0, at("22:41:50"), 2*usd),
		mk("evt_r2", 1, at("22:42:10"), 3*usd),
		mk("evt_r3", 1, at("22:42:20"), 4*usd),
		mk("evt_r4", 0, at("22:43:00"), 5*usd),
		mk("evt_r5", 1, at("22:43:59"), 6*usd),
	}
	legacy := mk("evt_legacy", 0, at("22:10:30"), usd/2)

	e.insertBypassing(t, 66, "spend_1m_events_mv", append(rows[:4:4], legacy)...)
	e.insertBypassing(t, 67, "spend_1d_events_mv", rows[4:]...)
	// What spend_1m held for evt_legacy before migration 0064; a re-rating of evt_r0 from $1
	// to $1.25; one row too many in spend_1d.
	// (INSERT ... SELECT: an INSERT with VALUES waits for data over the native protocol.)
	e.exec(t, "INSERT INTO "+e.db+".spend_1m (minute, provider, model, model_priced, team, feature, env, traffic, events, input_tokens, cost_usd) "+
		"SELECT toDateTime('2026-11-26 22:10:00'), 'openai', 'gpt-4o', 'gpt-4o-2024-08-06', 'search', 'summarize', 'prod', 'user', toUInt64(1), toUInt64(1200), toDecimal128(0.5, 12)")
	e.exec(t, "INSERT INTO "+e.db+".cost_corrections (rerate_id, kind, event_id, time, provider, model, model_priced, team, feature, env, traffic, events, input_tokens, cost_usd) "+
		"SELECT 'rr1', 'reverse', '"+rows[0].ID+"', toDateTime('2026-11-26 22:41:05'), 'openai', 'gpt-4o', 'gpt-4o-2024-08-06', 'search', 'summarize', 'prod', 'user', toInt8(-1), toInt64(-1200), toDecimal128(-1, 12) "+
		"UNION ALL SELECT 'rr1', 'apply', '"+rows[0].ID+"', toDateTime('2026-11-26 22:41:05'), 'openai', 'gpt-4o', 'gpt-4o-2024-08-06', 'search', 'summarize', 'prod', 'user', toInt8(1), toInt64(1200), toDecimal128(1.25, 12)")
	e.exec(t, "INSERT INTO "+e.db+".spend_1d (day, provider, model, model_priced, team, feature, env, traffic, partition, events, input_tokens, cost_usd) "+
		"SELECT toDate('2026-11-26'), 'openai', 'gpt-4o', 'gpt-4o-2024-08-06', 'search', 'summarize', 'prod', 'user', '1', toUInt64(1), toUInt64(1200), toDecimal128(0.5, 12)")
	if got := e.disagreement(t, "2026-11-26 22:10:00"); got == "" {
		t.Fatal("the roll-ups agree with usage_events before the repair; the test sets nothing up")
	}

	a := e.start(t, nil) // ready once both partitions are loaded and repaired
	if got := e.disagreement(t, "2026-11-26 22:10:00"); got != "" {
		t.Errorf("after start-up the roll-ups still differ from usage_events:\n%s", got)
	}
	for _, c := range []struct{ q, want string }{
		{"SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events", "7 21.500000000000"},
		// Re-rating added $0.25, and evt_legacy's minute still holds its old row.
		{"SELECT concat(toString(sum(events)), ' ', toString(sum(input_tokens)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m", "7 8400 21.750000000000"},
		{"SELECT concat(toString(sum(events)), ' ', toString(sum(input_tokens)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1d", "7 8400 21.750000000000"},
		{"SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m WHERE minute = '2026-11-26 22:10:00'", "1 0.500000000000"},
	} {
		if got := e.query(t, c.q); got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.q, got, c.want)
		}
	}
	for table, want := range map[string]float64{"spend_1m": 2, "spend_1d": 2, "skipped_minutes": 1, "skipped_days": 0} {
		if got := testutil.ToFloat64(a.m.repairs.WithLabelValues(table)); got != want {
			t.Errorf("repairs{table=%q} = %v, want %v", table, got, want)
		}
	}

	// A second start finds nothing to repair.
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b := e.start(t, nil)
	for _, table := range []string{"spend_1m", "spend_1d"} {
		if got := testutil.ToFloat64(b.m.repairs.WithLabelValues(table)); got != 0 {
			t.Errorf("second start: repairs{table=%q} = %v, want 0", table, got)
		}
	}
}

// An INSERT that fails after usage_events took its rows but before the views did — here a
// view that throws, which ClickHouse 18.16 runs before the roll-ups' (views go by name) — is
// retried: the retry finds every row stored and inserts none, and the writer then adds what
// the roll-ups lack, so all three tables agree while the process keeps running.
func TestUncertainInsertIsRepairedByTheWriter(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	e.exec(t, "CREATE MATERIALIZED VIEW "+e.db+".a_fail_mv ENGINE = Memory AS SELECT throwIf(cost_usd > 0) AS failed FROM "+e.db+".usage_events")
	now := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	var rows []batch.Row
	for i, p := range []int{0, 0, 1, 1} {
		rows = append(rows, row(idOnPartition("evt_uncertain_"+string(rune('a'+i)), p), now.Add(time.Duration(i)*time.Second), int64(i+1)*1_000_000_000_001))
	}
	e.publish(t, rows...)
	waitFor(t, "an INSERT to fail", func() bool { return testutil.ToFloat64(a.m.inserts.WithLabelValues("error")) >= 2 })
	e.exec(t, "DROP TABLE "+e.db+".a_fail_mv")
	e.waitDrained(t)

	if got := e.disagreement(t, ""); got != "" {
		t.Errorf("the roll-ups differ from usage_events:\n%s", got)
	}
	for _, c := range []struct{ q, want string }{
		{"SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events", "4 10.000000000010"},
		{"SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m", "4 10.000000000010"},
		{"SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1d", "4 10.000000000010"},
	} {
		if got := e.query(t, c.q); got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.q, got, c.want)
		}
	}
	// One group (a minute, a key) per partition and roll-up.
	for table, want := range map[string]float64{"spend_1m": 2, "spend_1d": 2} {
		if got := testutil.ToFloat64(a.m.repairs.WithLabelValues(table)); got != want {
			t.Errorf("repairs{table=%q} = %v, want %v", table, got, want)
		}
	}
	if got := testutil.ToFloat64(a.m.rows); got != 0 {
		t.Errorf("rows inserted = %v, want 0: every row landed with the failed INSERTs", got)
	}
}

// The response index usage_responses is repaired like the roll-ups: a crash between
// usage_events' part and the index's view leaves reports the aggregator could not find by
// their response id (and would count twice); the writer that takes over the partition adds
// exactly those, and a second start adds nothing.
func TestResponseIndexIsRepairedAtStartUp(t *testing.T) {
	e := newEnv(t)
	if _, err := migrate.Apply(context.Background(), e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	var rows []batch.Row
	for i, p := range []int{0, 1, 1} {
		r := row(idOnPartition("evt_resp"+string(rune('a'+i)), p), t0.Add(time.Duration(i)*time.Minute), 1)
		r.Partition, r.ResponseID = p, "chatcmpl-"+string(rune('a'+i))
		rows = append(rows, r)
	}
	indexed := row(idOnPartition("evt_indexed", 0), t0, 1)
	indexed.ResponseID = "chatcmpl-indexed"
	if err := seedInserter(t, e.db).Insert(context.Background(), 0, []batch.Row{indexed}); err != nil {
		t.Fatal(err)
	}
	e.insertBypassing(t, 106, "usage_responses_mv", rows...)
	const q = "SELECT arrayStringConcat(arraySort(groupArray(concat(toString(partition), ' ', response_id))), ', ') FROM {db}.usage_responses"
	if got, want := e.query(t, q), "0 chatcmpl-indexed"; got != want {
		t.Fatalf("before the repair usage_responses holds %q, want %q", got, want)
	}

	a := e.start(t, nil)
	if got, want := e.query(t, q), "0 chatcmpl-a, 0 chatcmpl-indexed, 1 chatcmpl-b, 1 chatcmpl-c"; got != want {
		t.Errorf("after start-up usage_responses holds %q, want %q", got, want)
	}
	if got := testutil.ToFloat64(a.m.repairs.WithLabelValues("usage_responses")); got != 3 {
		t.Errorf("repairs{table=usage_responses} = %v, want 3", got)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	b := e.start(t, nil)
	if got := testutil.ToFloat64(b.m.repairs.WithLabelValues("usage_responses")); got != 0 {
		t.Errorf("second start: repairs{table=usage_responses} = %v, want 0", got)
	}
}
