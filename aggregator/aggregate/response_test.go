package aggregate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// report is one emitter's report of the provider call rid: a proxy and an SDK report the same
// call under different event ids, and may spell the provider differently.
func report(id, provider, rid string, costPico int64) batch.Row {
	r := row(id, t0, costPico)
	r.Provider, r.ResponseID = provider, rid
	return r
}

// idOnPartition returns an id starting with prefix whose partition by id alone is p.
func idOnPartition(prefix string, p int) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if stream.Partition(id, testPartitions) == p {
			return id
		}
	}
}

func (e *env) stored(tb testing.TB) string {
	tb.Helper()
	return e.query(tb, `SELECT concat(toString(count()), ' ', arrayStringConcat(groupArray(event_id), ','), ' ', toString(sum(cost_usd)), ' ',
		arrayStringConcat(groupUniqArray(toString(partition)), ',')) FROM {db}.usage_events`)
}

func (e *env) rolledUp(tb testing.TB) string {
	tb.Helper()
	return e.query(tb, "SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd)), ' ', toString(sum(input_tokens))) FROM {db}.spend_1d")
}

// Two events with different ids and one response id are one call: whether their ids alone
// would have put them on the same partition or on different ones, in one message or two,
// the first is written and the second dropped and counted. A redelivery of the first is
// still an ordinary duplicate.
func TestSameResponseUnderTwoIdsIsWrittenOnce(t *testing.T) {
	for _, tc := range []struct {
		name           string
		idPartitions   [2]int // partitions of the two ids by id alone
		oneMessage     bool
		secondProvider string
	}{
		{"ids on one partition, two messages", [2]int{0, 0}, false, "openai"},
		{"ids on different partitions, two messages", [2]int{0, 1}, false, "OpenAI"},
		{"ids on different partitions, one message", [2]int{1, 0}, true, "openai"},
		{"ids on one partition, one message", [2]int{1, 1}, true, "OPENAI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.start(t, nil)
			rid := "chatcmpl-" + strings.ReplaceAll(tc.name, " ", "-")
			proxy := report(idOnPartition("proxy-openai", tc.idPartitions[0]), "openai", rid, 4_750_000_000)
			sdk := report(idOnPartition("sdk-evt", tc.idPartitions[1]), tc.secondProvider, rid, 4_750_000_000)
			p := stream.PartitionOf("openai", rid, "", testPartitions)
			if tc.oneMessage {
				e.publish(t, proxy, sdk)
			} else {
				e.publish(t, proxy)
				waitFor(t, "the first report written", func() bool { return e.count(t) == "1" })
				e.publish(t, sdk)
			}
			e.publish(t, proxy) // a redelivery of the kept report
			e.waitDrained(t)
			if got, want := e.stored(t), fmt.Sprintf("1 %s 0.004750000000 %d", proxy.ID, p); got != want {
				t.Errorf("usage_events count, ids, sum, partitions = %s, want %s", got, want)
			}
			if got, want := e.rolledUp(t), "1 0.004750000000 1200"; got != want {
				t.Errorf("spend_1d events, cost, input tokens = %s, want %s", got, want)
			}
			if got := testutil.ToFloat64(a.m.responseDuplicates); got != 1 {
				t.Errorf("response duplicates metric = %v, want 1", got)
			}
			if got := testutil.ToFloat64(a.m.duplicates); got != 1 {
				t.Errorf("duplicates metric = %v, want 1 (the redelivery)", got)
			}
			if got := testutil.ToFloat64(a.m.conflicts); got != 0 {
				t.Errorf("conflicts metric = %v, want 0", got)
			}
		})
	}
}

// Different providers, different response ids, and events without one are all distinct calls.
func TestDistinctResponsesAreAllWritten(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	e.publish(t,
		report("e1", "openai", "resp-1", 1),
		report("e2", "azure", "resp-1", 10),   // another provider's response with the same id
		report("e3", "openai", "resp-2", 100), // another response
		report("e4", "openai", "", 1000),      // no response id
		report("e5", "openai", "", 10000),
	)
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "5 0.000000011111"; got != want {
		t.Errorf("usage_events count and sum = %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(a.m.responseDuplicates); got != 0 {
		t.Errorf("response duplicates metric = %v, want 0", got)
	}
}

// The response set is rebuilt from ClickHouse at start: a second report arriving after a
// restart is still dropped, as is one arriving after a crash between insert and ack.
func TestSameResponseAcrossRestartIsWrittenOnce(t *testing.T) {
	e := newEnv(t)
	first := e.start(t, nil)
	proxy := report(idOnPartition("proxy-anthropic", 0), "anthropic", "msg_01XFDUDYJgAACzvnptvVoYEL", 30_000_000_000)
	e.publish(t, proxy)
	waitFor(t, "the first report written", func() bool { return e.count(t) == "1" })
	e.waitDrained(t)
	if err := first.stop(); err != nil {
		t.Fatalf("first Run returned %v", err)
	}

	second := e.start(t, nil)
	if got := testutil.ToFloat64(second.m.dedupResponses.WithLabelValues(fmt.Sprint(stream.PartitionOf("anthropic", proxy.ResponseID, "", testPartitions)))); got != 1 {
		t.Errorf("responses loaded at start = %v, want 1", got)
	}
	sdk := report(idOnPartition("sdk", 1), "Anthropic", proxy.ResponseID, 30_000_000_000)
	e.publish(t, sdk)
	e.waitDrained(t)
	if got, want := e.stored(t), fmt.Sprintf("1 %s 0.030000000000 %d", proxy.ID, stream.PartitionOf("anthropic", proxy.ResponseID, "", testPartitions)); got != want {
		t.Errorf("usage_events after restart = %s, want %s", got, want)
	}
	if got, want := e.rolledUp(t), "1 0.030000000000 1200"; got != want {
		t.Errorf("spend_1d events, cost, input tokens = %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(second.m.responseDuplicates); got != 1 {
		t.Errorf("response duplicates metric after restart = %v, want 1", got)
	}
	if got := testutil.ToFloat64(second.m.rows); got != 0 {
		t.Errorf("rows inserted after restart = %v, want 0", got)
	}
}

// A report timed before the window began is checked against ClickHouse by response id, near
// its own time: a redelivery received long ago, and a second report of an old call received
// now and timed by another clock, a minute after the first.
func TestReportOlderThanTheWindowIsLookedUpByResponse(t *testing.T) {
	e := newEnv(t)
	if _, err := migrate.Apply(context.Background(), e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	long := time.Now().UTC().Add(-100 * time.Hour).Truncate(time.Millisecond)
	proxy := report("proxy-openai-chatcmpl-old", "openai", "chatcmpl-old", 7)
	proxy.Time, proxy.Received = long, long
	p := stream.PartitionOf("openai", "chatcmpl-old", "", testPartitions)
	if err := seedInserter(t, e.db).Insert(context.Background(), p, []batch.Row{proxy}); err != nil {
		t.Fatal(err)
	}
	a := e.start(t, nil)
	sdk := report("sdk-old", "OpenAI", "chatcmpl-old", 7)
	sdk.Time, sdk.Received = long, long
	late := report("sdk-late", "openai", "chatcmpl-old", 7)
	late.Time, late.Received = long.Add(time.Minute), time.Now().UTC().Truncate(time.Millisecond)
	other := report("sdk-other", "openai", "chatcmpl-other", 11)
	other.Time, other.Received = long, long
	e.publish(t, sdk, late, other)
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', arrayStringConcat(groupArray(event_id), ','), ' ', toString(sum(cost_usd))) FROM (SELECT * FROM {db}.usage_events ORDER BY event_id)"),
		"2 proxy-openai-chatcmpl-old,sdk-other 0.000000000018"; got != want {
		t.Errorf("usage_events count, ids, sum = %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(a.m.responseDuplicates); got != 2 {
		t.Errorf("response duplicates metric = %v, want 2", got)
	}
}

// A report published on the partition of its id, when its response routes it elsewhere, is
// dead-lettered: written there, it would escape the response set of its own partition.
func TestReportOnItsIDPartitionIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	rid := "chatcmpl-misrouted"
	want := stream.PartitionOf("openai", rid, "", testPartitions)
	r := report(idOnPartition("evt-misrouted", 1-want), "openai", rid, 5)
	r.Partition = 1 - want
	data, err := batch.Encode([]batch.Row{r})
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(stream.EnrichedSubject(1 - want))
	msg.Data = data
	msg.Header.Set(stream.HeaderSchema, batch.SchemaName)
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(t)
	dead := e.deadLetters(t)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if got, wantReason := dead[0].Header.Get(stream.HeaderReason), fmt.Sprintf("event %q belongs to partition %d of 2, not to %d", r.ID, want, 1-want); got != wantReason {
		t.Errorf("dead letter reason = %q, want %q", got, wantReason)
	}
	if got := e.count(t); got != "0" {
		t.Errorf("usage_events holds %s rows, want 0", got)
	}
	if got := testutil.ToFloat64(a.m.poison); got != 1 {
		t.Errorf("poison metric = %v, want 1", got)
	}
}

// A dropped second report that comes again, changed, is dropped again as a second report of
// the call, not reported as a conflict with a copy that was never written.
func TestDroppedReportIsNotAConflictSource(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	proxy := report("proxy-openai-chatcmpl-9", "openai", "chatcmpl-9", 3)
	sdk := report("sdk-9", "openai", "chatcmpl-9", 3)
	changed := sdk
	changed.Tokens.Output = 301
	e.publish(t, proxy, sdk, changed)
	e.publish(t, changed)
	e.waitDrained(t)
	if got, want := e.stored(t), fmt.Sprintf("1 %s 0.000000000003 %d", proxy.ID, stream.PartitionOf("openai", "chatcmpl-9", "", testPartitions)); got != want {
		t.Errorf("usage_events count, ids, sum, partitions = %s, want %s", got, want)
	}
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"response duplicates", testutil.ToFloat64(a.m.responseDuplicates), 3},
		{"conflicts", testutil.ToFloat64(a.m.conflicts), 0},
		{"duplicates", testutil.ToFloat64(a.m.duplicates), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s metric = %v, want %v", c.name, c.got, c.want)
		}
	}
	if dead := e.deadLetters(t); len(dead) != 0 {
		t.Errorf("%d dead letters, want none", len(dead))
	}
}

// Reports of one call from sources of different rank, in ClickHouse: an anonymous report that
// came first is displaced by the proxy's — spend_1m, spend_1d and usage_costs count the
// proxy's tokens and cost only, usage_events keeps both as reported, usage_conflicts says
// which counts and why — and a later anonymous report that differs is recorded, not counted.
// A redelivery of the batch (a crash before its ack) displaces nothing twice.
func TestHigherRankDisplacesStoredReport(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	rid := "chatcmpl-forged"
	forged := report("forged-1", "openai", rid, 1_000)
	forged.Team, forged.Tokens.Input, forged.Tokens.CachedInput = "payments", 10, 0
	e.publish(t, forged)
	waitFor(t, "the anonymous report written", func() bool { return e.count(t) == "1" })

	proxy := report("proxy-openai-"+rid, "openai", rid, 4_750_000_000)
	proxy.Source = batch.SourceProxy
	e.publish(t, proxy)
	waitFor(t, "the proxy's report written", func() bool { return e.count(t) == "2" })
	e.publish(t, proxy) // a redelivery: no second displacement
	late := report("sdk-late", "openai", rid, 9_000_000_000)
	late.Tokens.Input = 5000
	e.publish(t, late)
	e.waitDrained(t)

	if got, want := e.rolledUp(t), "1 0.004750000000 1200"; got != want {
		t.Errorf("spend_1d events, cost, input tokens = %s, want %s (the proxy's report alone)", got, want)
	}
	if got, want := e.query(t, "SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd)), ' ', arrayStringConcat(arraySort(groupUniqArray(team)), ',')) FROM {db}.spend_1m WHERE events != 0 OR cost_usd != 0"), "1 0.004750000000 payments,search"; got != want {
		t.Errorf("spend_1m events, cost, teams = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT concat(toString(sum(cost_usd)), ' ', toString(sum(events))) FROM {db}.usage_costs WHERE team = 'payments'"), "0.000000000000 0"; got != want {
		t.Errorf("usage_costs of the forged team = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT arrayStringConcat(arraySort(groupArray(concat(event_id, '/', source))), ',') FROM {db}.usage_events"), "forged-1/,proxy-openai-chatcmpl-forged/proxy"; got != want {
		t.Errorf("usage_events = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT arrayStringConcat(arraySort(groupArray(concat(kind, ':', event_id, ':', toString(input_tokens), ':', toString(cost_usd)))), ',') FROM {db}.cost_corrections"),
		"displaced:forged-1:-10:-0.000000001000"; got != want {
		t.Errorf("cost_corrections = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT arrayStringConcat(arraySort(groupArray(concat(kept_event_id, '>', dropped_event_id, ' ', reason, ' ', toString(displaced), ' ', toString(kept_input_tokens), '/', toString(dropped_input_tokens), ' ', dropped_team))), ',') FROM {db}.usage_conflicts"),
		"proxy-openai-chatcmpl-forged>forged-1 higher_rank 1 1200/10 payments,proxy-openai-chatcmpl-forged>sdk-late higher_rank 0 1200/5000 search"; got != want {
		t.Errorf("usage_conflicts = %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(a.m.displaced); got != 1 {
		t.Errorf("displaced metric = %v, want 1", got)
	}
}
