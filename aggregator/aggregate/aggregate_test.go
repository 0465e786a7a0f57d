package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/aggregator/lease"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/keyset"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// testPartitions keeps the number of workers, and so the test's CPU, small.
const testPartitions = 2

// env is one test's pipeline end: embedded JetStream and a fresh ClickHouse database.
type env struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	conn driver.Conn
	db   string
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	e := newJetStream(tb)
	e.conn = chtest.Conn(tb)
	e.db = chtest.Database(tb, e.conn)
	return e
}

// newJetStream returns an env with embedded JetStream and its streams, and no ClickHouse.
func newJetStream(tb testing.TB) *env {
	tb.Helper()
	s, err := server.NewServer(&server.Options{JetStream: true, StoreDir: tb.TempDir(), Port: -1})
	if err != nil {
		tb.Fatalf("new NATS server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		tb.Fatal("NATS server not ready after 5s")
	}
	tb.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatalf("connect to NATS: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	if err := stream.Ensure(context.Background(), js, stream.DefaultOptions); err != nil {
		tb.Fatal(err)
	}
	return &env{nc: nc, js: js}
}

// aggregator is a running Aggregator; stop ends it and returns what Run returned.
type aggregator struct {
	*Aggregator
	reg  *prometheus.Registry
	done chan struct{} // closed when Run returns
	err  error         // what Run returned, once done is closed
	stop func() error
}

func (e *env) start(tb testing.TB, hook func(p int) error) *aggregator {
	tb.Helper()
	return e.startOwning(tb, hook, nil)
}

// startOwning starts an aggregator that owns the partitions owned (nil: all).
func (e *env) startOwning(tb testing.TB, hook func(p int) error, owned []int) *aggregator {
	tb.Helper()
	return e.startConfig(tb, hook, func(c *Config) { c.Owned = owned })
}

// startConfig starts an aggregator of the test's configuration changed by edit. Without a
// hook it waits until the aggregator is ready.
func (e *env) startConfig(tb testing.TB, hook func(p int) error, edit func(*Config)) *aggregator {
	tb.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		ClickHouseDSN: chtest.DSN(), Database: e.db, Partitions: testPartitions,
		BatchMaxWait: 20 * time.Millisecond, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	edit(&cfg)
	a, err := New(cfg, e.nc)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if hook != nil {
		a.beforeAck = func(p, _ int) error { return hook(p) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ag := &aggregator{Aggregator: a, reg: reg, done: done}
	go func() {
		ag.err = a.Run(ctx)
		close(done)
	}()
	ag.stop = func() error {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			tb.Fatal("Run did not return within 30s of cancel")
		}
		return ag.err
	}
	if hook == nil {
		waitFor(tb, "the aggregator to be ready", func() bool { return a.Ready() == nil })
	}
	tb.Cleanup(func() { _ = ag.stop() })
	return ag
}

// publish sends rows, grouped by partition, one message per partition and call.
func (e *env) publish(tb testing.TB, rows ...batch.Row) {
	tb.Helper()
	byPart := map[int][]batch.Row{}
	for _, r := range rows {
		r.Partition = stream.PartitionOf(r.Provider, r.ResponseID, r.ID, testPartitions)
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	for p, rs := range byPart {
		data, err := batch.Encode(rs)
		if err != nil {
			tb.Fatal(err)
		}
		msg := nats.NewMsg(stream.EnrichedSubject(p))
		msg.Data = data
		msg.Header.Set(stream.HeaderSchema, batch.SchemaName)
		if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
			tb.Fatalf("publish to %s: %v", msg.Subject, err)
		}
	}
}

// waitDrained waits until every partition's consumer has acked everything in the stream. A
// consumer learns of a new message asynchronously, so NumPending can read 0 just after a
// publish; the consumer that holds the stream's last message must also have acked it.
func (e *env) waitDrained(tb testing.TB) {
	tb.Helper()
	waitFor(tb, "consumers to ack every message", func() bool {
		st, err := e.js.Stream(context.Background(), stream.Enriched)
		if err != nil {
			return false
		}
		sinfo, err := st.Info(context.Background())
		if err != nil {
			return false
		}
		var floor uint64
		for p := range testPartitions {
			c, err := e.js.Consumer(context.Background(), stream.Enriched, consumerName(p))
			if err != nil {
				return false
			}
			info, err := c.Info(context.Background())
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
			floor = max(floor, info.AckFloor.Stream)
		}
		return floor == sinfo.State.LastSeq
	})
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testkit.Eventually(tb, 20*time.Second, what, cond)
}

func (e *env) query(tb testing.TB, q string) string {
	tb.Helper()
	return chtest.String(tb, e.conn, strings.ReplaceAll(q, "{db}", e.db))
}

func (e *env) count(tb testing.TB) string {
	tb.Helper()
	return e.query(tb, "SELECT toString(count()) FROM {db}.usage_events")
}

func row(id string, at time.Time, costPico int64) batch.Row {
	return batch.Row{
		ID: id, Time: at, Received: time.Now().UTC().Truncate(time.Millisecond),
		Provider: "openai", Model: "gpt-4o", Operation: "chat",
		Tokens:      event.Tokens{Input: 1200, Output: 300, CachedInput: 1000},
		ServiceTier: "standard", Status: "ok", LatencyMS: 850,
		Team: "search", Feature: "summarize", Env: "prod", Traffic: "user",
		Priced: true, ModelPriced: "gpt-4o-2024-08-06", PriceVersion: "v1",
		CostPico: costPico,
	}
}

var t0 = time.Date(2026, 11, 26, 22, 41, 31, 123_000_000, time.UTC)

func TestWritesEventsAndRollups(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	r1 := row("evt_a", t0, 4_250_000_000_001) // $4.250000000001
	r1.ExtraTags = []batch.Tag{{Key: "customer", Value: "acme"}, {Key: "region", Value: "eu"}}
	r1.WorkflowID, r1.PromptVersion, r1.ResponseID = "ticket-4711", "summarize@v7", "chatcmpl-1"
	r1.SavingsPico = 2_500_000_000_000
	r2 := row("evt_b", t0.Add(10*time.Second), 1) // one picodollar, same minute
	r3 := row("evt_c", t0.Add(time.Minute), 333_333_333_333)
	r3.Priced, r3.Team = false, "ads"
	e.publish(t, r1, r2, r3)
	waitFor(t, "3 rows in usage_events", func() bool { return e.count(t) == "3" })
	e.waitDrained(t)

	got := e.query(t, `SELECT concat(event_id, '|', toString(time, 'UTC'), '|', toString(time_ms), '|', toString(partition), '|',
		arrayStringConcat(tag_keys, ','), '=', arrayStringConcat(tag_values, ','), '|', workflow_id, '|', prompt_version, '|', response_id, '|',
		toString(input_tokens), '/', toString(output_tokens), '/', toString(cached_input_tokens), '|',
		toString(cost_usd), '|', toString(savings_usd), '|', toString(priced), '|', model_priced, '|', toString(latency_ms), '|', toString(cache_hit))
		FROM {db}.usage_events WHERE event_id = 'evt_a'`)
	want := fmt.Sprintf("evt_a|2026-11-26 22:41:31|123|%d|customer,region=acme,eu|ticket-4711|summarize@v7|chatcmpl-1|1200/300/1000|4.250000000001|2.500000000000|1|gpt-4o-2024-08-06|850|0",
		stream.PartitionOf("openai", "chatcmpl-1", "evt_a", testPartitions))
	if got != want {
		t.Errorf("usage_events row evt_a:\n got %s\nwant %s", got, want)
	}

	for _, c := range []struct{ name, q, want string }{
		{"usage_events sum", "SELECT toString(sum(cost_usd)) FROM {db}.usage_events", "4.583333333335"},
		{"spend_1m per minute", `SELECT arrayStringConcat(groupArray(s), ';') FROM (SELECT concat(toString(minute, 'UTC'), ' ', toString(sum(events)), ' ', toString(sum(cost_usd)), ' ', toString(sum(unpriced_events))) AS s
			FROM {db}.spend_1m GROUP BY minute ORDER BY minute)`,
			"2026-11-26 22:41:00 2 4.250000000002 0;2026-11-26 22:42:00 1 0.333333333333 1"},
		{"spend_1d per team", `SELECT arrayStringConcat(groupArray(s), ';') FROM (SELECT concat(toString(day), ' ', team, ' ', toString(sum(events)), ' ', toString(sum(input_tokens)), ' ', toString(sum(cost_usd)), ' ', toString(sum(savings_usd))) AS s
			FROM {db}.spend_1d GROUP BY day, team ORDER BY team)`,
			"2026-11-26 ads 1 1200 0.333333333333 0.000000000000;2026-11-26 search 2 2400 4.250000000002 2.500000000000"},
	} {
		if got := e.query(t, c.q); got != c.want {
			t.Errorf("%s = %s, want %s", c.name, got, c.want)
		}
	}
	if err := a.Ready(); err != nil {
		t.Errorf("Ready() = %v, want nil", err)
	}
	if got := testutil.ToFloat64(a.m.rows); got != 3 {
		t.Errorf("rows inserted metric = %v, want 3", got)
	}
	if err := a.stop(); err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
}

func TestSameEventInTwoMessagesIsWrittenOnce(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	e.publish(t, row("evt_1", t0, 1_000_000))
	waitFor(t, "evt_1 written", func() bool { return e.count(t) == "1" })
	// A later message repeats evt_1, and repeats evt_2 within itself.
	e.publish(t, row("evt_1", t0, 1_000_000), row("evt_2", t0, 2_000_000), row("evt_2", t0, 2_000_000))
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "2 0.000003000000"; got != want {
		t.Errorf("usage_events count and sum = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m"), "2 0.000003000000"; got != want {
		t.Errorf("spend_1m events and sum = %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(a.m.duplicates); got != 2 {
		t.Errorf("duplicates metric = %v, want 2", got)
	}
}

func TestCrashAfterInsertBeforeAck(t *testing.T) {
	e := newEnv(t)
	errCrash := errors.New("simulated crash")
	first := e.start(t, func(int) error { return errCrash })
	var rows []batch.Row
	for i := range 20 {
		rows = append(rows, row(fmt.Sprintf("evt_%02d", i), t0.Add(time.Duration(i)*time.Second), int64(i+1)*1_000_000_001))
	}
	e.publish(t, rows...)
	select {
	case <-first.done:
		if !errors.Is(first.err, errCrash) {
			t.Fatalf("first Run returned %v, want the simulated crash", first.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("first aggregator did not stop at the hook within 20s")
	}
	inserted := e.count(t)

	// The messages were never acked; a new aggregator receives them again.
	second := e.start(t, nil)
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "20 0.210000000210"; got != want {
		t.Errorf("after redelivery usage_events count and sum = %s, want %s (first aggregator had inserted %s rows)", got, want, inserted)
	}
	if got, want := e.query(t, "SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1d"), "20 0.210000000210"; got != want {
		t.Errorf("after redelivery spend_1d events and sum = %s, want %s", got, want)
	}
	if got, want := testutil.ToFloat64(second.m.duplicates), 20-testutil.ToFloat64(second.m.rows); got != want || inserted == "0" {
		t.Errorf("second aggregator skipped %v duplicates and inserted %v rows after the first inserted %s; want every inserted row skipped", got, testutil.ToFloat64(second.m.rows), inserted)
	}
}

// An INSERT whose rows span two months writes one part per month; if only the January part
// landed before a crash, the redelivered batch must add February and nothing else.
func TestBatchSpanningTwoMonthsCompletesHalfLandedInsert(t *testing.T) {
	e := newEnv(t)
	if _, err := migrate.Apply(context.Background(), e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	jan := row("evt_jan", time.Date(2026, 1, 31, 23, 59, 59, 999_000_000, time.UTC), 7_000_000_000_007)
	feb := row("evt_feb", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), 9_000_000_000_009)
	// Both must be in the same partition to share one INSERT; find ids that are.
	for i := 0; stream.Partition(jan.ID, testPartitions) != stream.Partition(feb.ID, testPartitions); i++ {
		feb.ID = fmt.Sprintf("evt_feb_%d", i)
	}
	p := stream.Partition(jan.ID, testPartitions)
	if err := seedInserter(t, e.db).Insert(context.Background(), p, []batch.Row{jan}); err != nil {
		t.Fatal(err)
	}

	e.start(t, nil)
	e.publish(t, jan, feb)
	e.waitDrained(t)
	for _, c := range []struct{ q, want string }{
		{"SELECT arrayStringConcat(groupArray(s), ';') FROM (SELECT concat(event_id, ' ', toString(cost_usd)) AS s FROM {db}.usage_events ORDER BY time)",
			"evt_jan 7.000000000007;" + feb.ID + " 9.000000000009"},
		{"SELECT arrayStringConcat(groupArray(s), ';') FROM (SELECT concat(toString(day), ' ', toString(sum(events)), ' ', toString(sum(cost_usd))) AS s FROM {db}.spend_1d GROUP BY day ORDER BY day)",
			"2026-01-31 1 7.000000000007;2026-02-01 1 9.000000000009"},
		{"SELECT arrayStringConcat(groupArray(p), ',') FROM (SELECT DISTINCT partition AS p FROM system.parts WHERE database = '{db}' AND table = 'usage_events' AND active ORDER BY p)",
			"202601,202602"},
	} {
		if got := e.query(t, c.q); got != c.want {
			t.Errorf("%s\n got %s\nwant %s", c.q, got, c.want)
		}
	}
}

// A copy of an event timed before the de-duplication window is not in the set; it is looked up
// in ClickHouse near its own time instead. Two such copies: a redelivery of a message received
// long ago, and a client's re-send, received now, of an event sent long ago — which the set
// alone, keyed by receipt, would let through a second time.
func TestEventOlderThanTheWindowIsLookedUp(t *testing.T) {
	e := newEnv(t)
	if _, err := migrate.Apply(context.Background(), e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	long := time.Now().UTC().Add(-100 * time.Hour).Truncate(time.Millisecond)
	redelivered := row(idOnPartition("evt_redelivered", 0), long, 5)
	redelivered.Received = long
	resent := row(idOnPartition("evt_resent", 0), long.Add(time.Second), 7)
	resent.Received = long.Add(2 * time.Second)
	for _, r := range []batch.Row{redelivered, resent} {
		if err := seedInserter(t, e.db).Insert(context.Background(), stream.Partition(r.ID, testPartitions), []batch.Row{r}); err != nil {
			t.Fatal(err)
		}
	}
	a := e.start(t, nil)
	if got := testutil.ToFloat64(a.m.dedupIDs.WithLabelValues("0")) + testutil.ToFloat64(a.m.dedupIDs.WithLabelValues("1")); got != 0 {
		t.Fatalf("the sets hold %v ids, want 0: both stored events are older than the window", got)
	}
	resent.Received = time.Now().UTC().Truncate(time.Millisecond)
	// Partition 1 holds nothing timed in that hour, so its set vouches for it alone.
	e.publish(t, redelivered, resent, row(idOnPartition("evt_new", 0), long, 6), row(idOnPartition("evt_elsewhere", 1), long, 9))
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "4 0.000000000027"; got != want {
		t.Errorf("usage_events count and sum = %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(a.m.duplicates); got != 2 {
		t.Errorf("duplicates metric = %v, want 2", got)
	}
	if got := testutil.ToFloat64(a.m.lookups.WithLabelValues("id")); got != 3 {
		t.Errorf("id lookups = %v, want 3 (the rows of partition 0)", got)
	}
}

// History sent now into hours that hold nothing from before the window — a backfill — is
// written without a lookup, and a second copy of it is caught by the set alone.
func TestBackfillIntoEmptyHoursIsNotLookedUp(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	long := time.Now().UTC().Add(-100 * time.Hour).Truncate(time.Millisecond)
	var rows []batch.Row
	for i := range 10 {
		rows = append(rows, row(fmt.Sprintf("evt_backfill_%d", i), long.Add(time.Duration(i)*time.Hour), int64(i+1)))
	}
	e.publish(t, rows...)
	e.waitDrained(t)
	e.publish(t, rows[3], rows[7])
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "10 0.000000000055"; got != want {
		t.Errorf("usage_events count and sum = %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(a.m.duplicates); got != 2 {
		t.Errorf("duplicates metric = %v, want 2", got)
	}
	if got := testutil.ToFloat64(a.m.lookups.WithLabelValues("id")); got != 0 {
		t.Errorf("id lookups = %v, want 0", got)
	}
}

func TestPoisonMessageIsDeadLetteredAndDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	good := row("evt_good", t0, 42)
	p := stream.Partition(good.ID, testPartitions)
	ack, err := e.js.Publish(context.Background(), stream.EnrichedSubject(p), []byte("not an arrow stream"))
	if err != nil {
		t.Fatal(err)
	}
	e.publish(t, good)
	waitFor(t, "the good event written", func() bool { return e.count(t) == "1" })
	e.waitDrained(t)

	deadStream, err := e.js.Stream(context.Background(), stream.Dead)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := deadStream.GetLastMsgForSubject(context.Background(), stream.DeadSubject("aggregator"))
	if err != nil {
		t.Fatalf("read the dead letter: %v", err)
	}
	if got, want := dead.Header.Get(stream.HeaderSource), fmt.Sprintf("USAGE_ENRICHED/%d", ack.Sequence); got != want {
		t.Errorf("dead letter %s = %q, want %q", stream.HeaderSource, got, want)
	}
	if reason := dead.Header.Get(stream.HeaderReason); !strings.HasPrefix(reason, "decode arrow batch") {
		t.Errorf("dead letter %s = %q, want the decode error", stream.HeaderReason, reason)
	}
	if string(dead.Data) != "not an arrow stream" {
		t.Errorf("dead letter data = %q, want the original payload", dead.Data)
	}
	if got := testutil.ToFloat64(a.m.poison); got != 1 {
		t.Errorf("poison metric = %v, want 1", got)
	}
}

func TestConfigValidateNamesEveryBadValue(t *testing.T) {
	err := Config{
		ClickHouseDSN: "clickhouse://127.0.0.1:9000", Database: "tm-prod", Partitions: -1,
		BatchMaxRows: -5, BatchMaxWait: time.Microsecond, DedupWindow: time.Minute, AckWait: time.Second,
	}.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	got := strings.Split(err.Error(), "\n")
	sort.Strings(got)
	want := []string{
		"-batch-max-rows (-5) must be positive",
		"-batch-max-wait (1µs) must be at least 1ms",
		`-database: database name "tm-prod": want letters, digits and underscores, not starting with a digit`,
		"-dedup-window (1m0s) must be at least 5m0s",
		"-partitions (-1) must be between 1 and 65536",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate():\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestConfigValidateOwned(t *testing.T) {
	err := Config{Partitions: 4, Owned: []int{1, 4, 1, -1}}.withDefaults().Validate()
	want := "-own: partition 4 is not one of the 4 partitions (0..3)\n" +
		"-own: partition 1 is listed twice\n" +
		"-own: partition -1 is not one of the 4 partitions (0..3)"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want:\n%s", err, want)
	}
	if got := (Config{Partitions: 3}).withDefaults().Owned; fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("default Owned = %v, want [0 1 2]", got)
	}
}

func TestParsePartitions(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		ps, err := ParsePartitions(in)
		got := fmt.Sprint(ps)
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("ParsePartitions(%q) = %s, want %s", in, got, want)
		}
	}
	f("0", "[0]")
	f("0,1", "[0 1]")
	f(" 2 , 0-1,6", "[2 0 1 6]")
	f("4-4", "[4]")
	f("", `partition list "": "" is not a partition number or a range like 0-3`)
	f("1,", `partition list "1,": "" is not a partition number or a range like 0-3`)
	f("3-1", `partition list "3-1": "3-1" is not a partition number or a range like 0-3`)
	f("-1", `partition list "-1": "-1" is not a partition number or a range like 0-3`)
	f("a", `partition list "a": "a" is not a partition number or a range like 0-3`)
	f("0-99999999999", `partition list "0-99999999999": "0-99999999999" is not a partition number or a range like 0-3`)
}

// Two aggregators owning one partition each write one database together: every event once,
// the roll-ups exact, each consumer drained, and each ready although the other's partition
// is not its own.
func TestTwoAggregatorsOwningOnePartitionEach(t *testing.T) {
	e := newEnv(t)
	a0 := e.startOwning(t, nil, []int{0})
	a1 := e.startOwning(t, nil, []int{1})
	var rows []batch.Row
	perPartition := [testPartitions]int{}
	for i := range 2000 {
		r := row(fmt.Sprintf("evt_%05d", i), t0.Add(time.Duration(i)*time.Second), int64(i)*1_000_000_001)
		perPartition[stream.PartitionOf(r.Provider, r.ResponseID, r.ID, testPartitions)]++
		rows = append(rows, r)
	}
	for i := 0; i < len(rows); i += 100 {
		e.publish(t, rows[i:i+100]...)
	}
	e.publish(t, rows[:300]...) // redelivered copies: still once
	waitFor(t, "2000 rows in usage_events", func() bool { return e.count(t) == "2000" })
	e.waitDrained(t)
	// sum(i * 1_000_000_001 pico) for i < 2000 = 1999000 * 1_000_000_001 picodollars.
	for _, c := range []struct{ name, q, want string }{
		{"usage_events", "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events", "2000 1999.000001999000"},
		{"spend_1m", "SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m", "2000 1999.000001999000"},
		{"spend_1d", "SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1d", "2000 1999.000001999000"},
		{"per partition", "SELECT arrayStringConcat(groupArray(s), ',') FROM (SELECT toString(count()) AS s FROM {db}.usage_events GROUP BY partition ORDER BY partition)",
			fmt.Sprintf("%d,%d", perPartition[0], perPartition[1])},
	} {
		if got := e.query(t, c.q); got != c.want {
			t.Errorf("%s = %s, want %s", c.name, got, c.want)
		}
	}
	for i, a := range []*aggregator{a0, a1} {
		if err := a.Ready(); err != nil {
			t.Errorf("aggregator %d: Ready() = %v, want nil", i, err)
		}
		if got := testutil.ToFloat64(a.m.rows); got != float64(perPartition[i]) {
			t.Errorf("aggregator %d wrote %v rows, want its partition's %d", i, got, perPartition[i])
		}
	}
}

// An INSERT still running in ClickHouse holds up only the aggregator owning one of the
// partitions its query id names; an INSERT whose partitions cannot be told holds up all.
func TestRunningInsertsAreToldApartByPartition(t *testing.T) {
	e := newEnv(t)
	st := store{conn: e.conn, db: e.db}
	if _, err := migrate.Apply(context.Background(), e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	base, err := chwrite.HTTPURL(chtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	// An INSERT that ClickHouse is still executing, as one of a killed aggregator can be:
	// this one takes 20 s over its rows (or until cut off), whose first column reads "0".
	var hangOn func(queryID, into string) func()
	hang := func(queryID string) func() { return hangOn(queryID, "usage_events (event_id)") }
	hangOn = func(queryID, into string) func() {
		ctx, cancel := context.WithCancel(context.Background())
		q := "INSERT INTO " + e.db + "." + into + " SELECT toString(sleepEachRow(0.5)) FROM system.numbers LIMIT 40"
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/?max_block_size=1&query_id="+url.QueryEscape(queryID), strings.NewReader(q))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		return func() {
			cancel()
			<-done
			// ClickHouse stops a query whose client went away only when it next writes to it;
			// KILL QUERY ends it now.
			if err := e.conn.Exec(context.Background(), "KILL QUERY WHERE query_id = '"+queryID+"' SYNC"); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(mine func(int) bool) int {
		running, err := st.runningInserts(context.Background(), mine)
		if err != nil {
			t.Fatal(err)
		}
		return len(running)
	}
	owns := func(ps ...int) func(int) bool { return func(p int) bool { return slices.Contains(ps, p) } }

	cut := hang("tokenmeter-insert:1,3:abc-1")
	waitFor(t, "the INSERT to run", func() bool { return count(owns(1)) == 1 })
	if got := count(owns(3)); got != 1 {
		t.Errorf("owner of 3 sees %d running INSERTs, want 1", got)
	}
	if got := count(owns(0, 2)); got != 0 {
		t.Errorf("owner of 0 and 2 sees %d running INSERTs, want 0", got)
	}
	cut()
	waitFor(t, "the INSERT to end", func() bool { return count(owns(1)) == 0 })

	// A roll-up repair's INSERT holds up its partition's writer too, whichever table it fills.
	for _, into := range []string{"spend_1m (provider)", "unit_spend_1d (provider)", "usage_responses (provider)"} {
		cut = hangOn("tokenmeter-insert:2:repair-1", into)
		waitFor(t, "the repair INSERT into "+into+" to run", func() bool { return count(owns(2)) == 1 })
		cut()
		waitFor(t, "the repair INSERT into "+into+" to end", func() bool { return count(owns(2)) == 0 })
	}

	cut = hang("by-hand-42")
	waitFor(t, "the INSERT by hand to hold up everyone", func() bool { return count(owns(0)) == 1 })
	cut()
	waitFor(t, "the INSERT by hand to end", func() bool { return count(owns(0)) == 0 })

	// An INSERT of the aggregator's own partitions that ClickHouse runs on past
	// StuckInsertAfter is killed, so that the partitions go on: the wait ends although the
	// INSERT would run 20 s.
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a := &Aggregator{cfg: Config{StuckInsertAfter: time.Second, Partitions: 4}, log: slog.New(slog.DiscardHandler), m: m,
		chBreaker: gobreaker.NewCircuitBreaker(gobreaker.Settings{Name: "clickhouse"}), owned: []bool{true, true, true, true}}
	cut = hang("tokenmeter-insert:2:stuck-1")
	defer cut()
	waitFor(t, "the stuck INSERT to run", func() bool { return count(owns(2)) == 1 })
	start := time.Now()
	if err := a.awaitNoInsertsOf(context.Background(), st, owns(2), "waiting"); err != nil {
		t.Fatal(err)
	}
	if count(owns(2)) != 0 || time.Since(start) > 15*time.Second || testutil.ToFloat64(a.m.stuckKilled) != 1 {
		t.Errorf("after the wait: %d running, %s waited, %v killed; want the stuck INSERT killed", count(owns(2)), time.Since(start), testutil.ToFloat64(a.m.stuckKilled))
	}
}

// A ClickHouse failure is not poison: the batch is kept, retried, reported as not ready, and
// acked only once written.
func TestClickHouseFailureIsRetriedNotAcked(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	e.query(t, "SELECT toString(count()) FROM {db}.usage_events") // migrations are applied
	if err := e.conn.Exec(context.Background(), "RENAME TABLE "+e.db+".usage_events TO "+e.db+".usage_events_away"); err != nil {
		t.Fatal(err)
	}
	// Timed now, so that the rows reach the INSERT: ones older than the window are looked up
	// first, and that lookup fails before.
	now := time.Now().UTC().Truncate(time.Millisecond)
	e.publish(t, row("evt_x", now, 1_500_000_000_000), row("evt_y", now, 2_500_000_000_000))
	waitFor(t, "Ready() to report the failing insert", func() bool {
		err := a.Ready()
		return err != nil && strings.Contains(err.Error(), "insert")
	})
	for p := range testPartitions {
		c, err := e.js.Consumer(context.Background(), stream.Enriched, consumerName(p))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// publish sent one message to each partition holding evt_x or evt_y.
		want := uint64(0)
		if p == stream.Partition("evt_x", testPartitions) || p == stream.Partition("evt_y", testPartitions) {
			want = 1
		}
		if got := uint64(info.NumAckPending) + info.NumPending; got != want {
			t.Errorf("partition %d has %d unacked messages while ClickHouse cannot take them, want %d", p, got, want)
		}
	}
	if got := testutil.ToFloat64(a.m.inserts.WithLabelValues("error")); got < 1 {
		t.Errorf("failed inserts metric = %v, want at least 1", got)
	}

	if err := e.conn.Exec(context.Background(), "RENAME TABLE "+e.db+".usage_events_away TO "+e.db+".usage_events"); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(t)
	waitFor(t, "Ready() to recover", func() bool { return a.Ready() == nil })
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "2 4.000000000000"; got != want {
		t.Errorf("usage_events count and sum = %s, want %s", got, want)
	}
	if got, want := e.query(t, "SELECT concat(toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m"), "2 4.000000000000"; got != want {
		t.Errorf("spend_1m events and sum = %s, want %s", got, want)
	}
}

// deadLetters reads every message of USAGE_DEAD from the aggregator.
func (e *env) deadLetters(tb testing.TB) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, stream.Dead)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatalf("read message %d of %s: %v", seq, stream.Dead, err)
		}
		out = append(out, m)
	}
	return out
}

// The same event id with different content is counted once — the first copy — and the second
// copy is reported: a conflict metric and a USAGE_DEAD record holding it with the reason. A
// copy priced differently but with the same content is a plain duplicate. Both hold across a
// restart, when the set is rebuilt from ClickHouse's content_fp column, and within one batch.
func TestConflictingCopyIsDroppedAndReported(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	first := row("evt_x", t0, 1_000_000)
	e.publish(t, first)
	waitFor(t, "evt_x written", func() bool { return e.count(t) == "1" })

	changed := first
	changed.Tokens.Output = 301 // a different call under the same id
	repriced := first
	repriced.CostPico, repriced.PriceVersion = 9_999_999, "v2" // the same call priced again
	inBatch, inBatchChanged := row("evt_y", t0, 5), row("evt_y", t0, 5)
	inBatchChanged.Team = "ads"
	e.publish(t, changed, repriced, inBatch, inBatchChanged)
	e.waitDrained(t)
	if got := testutil.ToFloat64(a.m.conflicts); got != 2 {
		t.Errorf("conflicts metric = %v, want 2", got)
	}
	if got := testutil.ToFloat64(a.m.duplicates); got != 1 {
		t.Errorf("duplicates metric = %v, want 1 (the repriced copy)", got)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	// After a restart the set comes from ClickHouse; the conflict is still recognised.
	b := e.start(t, nil)
	changedAgain := first
	changedAgain.Model = "gpt-4o-mini"
	e.publish(t, changedAgain, first)
	e.waitDrained(t)
	if got := testutil.ToFloat64(b.m.conflicts); got != 1 {
		t.Errorf("after restart: conflicts metric = %v, want 1", got)
	}
	if got := testutil.ToFloat64(b.m.duplicates); got != 1 {
		t.Errorf("after restart: duplicates metric = %v, want 1", got)
	}

	want := "evt_x 1200/300 0.000001000000 search;evt_y 1200/300 0.000000000005 search"
	if got := e.query(t, "SELECT arrayStringConcat(groupArray(s), ';') FROM (SELECT concat(event_id, ' ', toString(input_tokens), '/', toString(output_tokens), ' ', toString(cost_usd), ' ', team) AS s FROM {db}.usage_events ORDER BY event_id)"); got != want {
		t.Errorf("usage_events:\n got %s\nwant %s", got, want)
	}
	if got, want := e.query(t, "SELECT concat(toString(sum(events)), ' ', toString(sum(output_tokens)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m"), "2 600 0.000001000005"; got != want {
		t.Errorf("spend_1m = %s, want %s", got, want)
	}

	dead := e.deadLetters(t)
	var reasons []string
	for _, m := range dead {
		rows, err := batch.Decode(m.Data)
		if err != nil || len(rows) != 1 {
			t.Fatalf("dead letter %q holds %d rows (%v), want the one conflicting copy", m.Header.Get(stream.HeaderReason), len(rows), err)
		}
		reason := m.Header.Get(stream.HeaderReason)
		if !strings.HasPrefix(reason, fmt.Sprintf("conflict: event id %q is already stored with different content", rows[0].ID)) {
			t.Errorf("dead letter reason %q does not name the conflict on %s", reason, rows[0].ID)
		}
		reasons = append(reasons, fmt.Sprintf("%s %d %s %s", rows[0].ID, rows[0].Tokens.Output, rows[0].Model, rows[0].Team))
	}
	sort.Strings(reasons)
	if got, want := strings.Join(reasons, ";"), "evt_x 300 gpt-4o-mini search;evt_x 301 gpt-4o search;evt_y 300 gpt-4o ads"; got != want {
		t.Errorf("dead-lettered copies:\n got %s\nwant %s", got, want)
	}
}

// A row with impossible values is quarantined with its reason; the rows beside it in the same
// message are written.
func TestImpossibleRowIsQuarantinedAndTheRestWritten(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, nil)
	good, bad, worse := row("evt_ok", t0, 7), row("evt_bad", t0, 8), row("evt_worse", t0, 9)
	bad.Tokens.Input = -5
	worse.Tokens.Reasoning, worse.CostPico = 301, -1
	// One message: put all three on one partition.
	p := stream.Partition(good.ID, testPartitions)
	for i := 0; stream.Partition(bad.ID, testPartitions) != p; i++ {
		bad.ID = fmt.Sprintf("evt_bad_%d", i)
	}
	for i := 0; stream.Partition(worse.ID, testPartitions) != p; i++ {
		worse.ID = fmt.Sprintf("evt_worse_%d", i)
	}
	e.publish(t, bad, good, worse)
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', any(event_id), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "1 evt_ok 0.000000000007"; got != want {
		t.Errorf("usage_events = %s, want %s", got, want)
	}
	dead := e.deadLetters(t)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	rows, err := batch.Decode(dead[0].Data)
	if err != nil || len(rows) != 2 || rows[0].ID != bad.ID || rows[1].ID != worse.ID {
		t.Fatalf("dead letter holds %d rows (%v), want %s and %s", len(rows), err, bad.ID, worse.ID)
	}
	want := fmt.Sprintf("impossible values: event %q: input_tokens (-5) outside 0..100000000; cached_input_tokens (1000) + cache_write_tokens (0) exceed input_tokens (-5); "+
		"event %q: reasoning_tokens (301) exceed output_tokens (300); negative cost (-1) or savings (0) in picodollars", bad.ID, worse.ID)
	if got := dead[0].Header.Get(stream.HeaderReason); got != want {
		t.Errorf("reason:\n got %s\nwant %s", got, want)
	}
	if got := testutil.ToFloat64(a.m.poison); got != 2 {
		t.Errorf("poison metric = %v, want 2", got)
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

// A second aggregator given the same partitions waits for their leases instead of writing
// beside the first, and takes over, with the first's ids, once the first stops.
func TestSecondWriterOfAPartitionWaitsForTheLease(t *testing.T) {
	e := newEnv(t)
	first := e.startConfig(t, nil, func(c *Config) { c.Instance = "host-a" })
	noHook := func(int) error { return nil } // start without waiting for readiness
	second := e.startConfig(t, noHook, func(c *Config) { c.Instance = "host-b" })
	waitFor(t, "the second aggregator to wait for both leases", func() bool {
		err := second.Ready()
		return err != nil && strings.Contains(err.Error(), `partition 0: the lease partition-0 is held by "host-a"`) &&
			strings.Contains(err.Error(), `partition 1: the lease partition-1 is held by "host-a"`)
	})
	var rows []batch.Row
	for i := range 40 {
		rows = append(rows, row(fmt.Sprintf("evt_lease_%02d", i), time.Now().UTC().Truncate(time.Millisecond), int64(i+1)))
	}
	e.publish(t, rows[:20]...)
	e.waitDrained(t)
	if got := testutil.ToFloat64(second.m.rows); got != 0 {
		t.Fatalf("the waiting aggregator inserted %v rows, want 0", got)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second aggregator to take the leases over", func() bool { return second.Ready() == nil })
	e.publish(t, append(rows[20:], rows[:5]...)...)
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(uniqExact(event_id)), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "40 40 0.000000000820"; got != want {
		t.Errorf("usage_events count, distinct ids, sum = %s, want %s", got, want)
	}
	if got, dups := testutil.ToFloat64(second.m.rows), testutil.ToFloat64(second.m.duplicates); got != 20 || dups != 5 {
		t.Errorf("the second aggregator inserted %v rows and dropped %v duplicates, want 20 and 5", got, dups)
	}
}

// An aggregator whose lease another holder takes stops writing the partition — the batch
// waits, unwritten — and writes it, once, after the lease is free again.
func TestTakenLeaseStopsWriting(t *testing.T) {
	e := newEnv(t)
	a := e.startConfig(t, nil, func(c *Config) { c.Instance = "host-a" })
	kv, _, err := lease.Open(context.Background(), e.js, lease.DefaultTTL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), lease.Key(0), []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the aggregator to find its lease lost", func() bool {
		err := a.Ready()
		return err != nil && strings.Contains(err.Error(), "partition 0: renew the lease partition-0: the lease was taken by another holder")
	})
	e.publish(t, row(idOnPartition("evt_taken", 0), time.Now().UTC().Truncate(time.Millisecond), 7))
	waitFor(t, "the batch to wait for the lease", func() bool {
		err := a.Ready()
		return err != nil && strings.Contains(err.Error(), `partition 0: the lease partition-0 is held by "intruder"`)
	})
	if got := e.count(t); got != "0" {
		t.Fatalf("usage_events holds %s rows while another holder has the lease, want 0", got)
	}
	if err := kv.Delete(context.Background(), lease.Key(0)); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(t)
	waitFor(t, "the aggregator to be ready again", func() bool { return a.Ready() == nil })
	if got, want := e.query(t, "SELECT concat(toString(count()), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"), "1 0.000000000007"; got != want {
		t.Errorf("usage_events count and sum = %s, want %s", got, want)
	}
}

// -dedup-max-bytes bounds the sets the aggregator loads at start-up too (it once built them
// anew without the bound, so a production aggregator kept the whole window whatever the
// flag): of the 300 events stored 40 to 15 minutes ago, 10 in each 50 s bucket of the window,
// the sets keep the newest 100, and copies of the others sent again are still found, in
// ClickHouse.
func TestDedupBoundHoldsAfterStartUp(t *testing.T) {
	e := newEnv(t)
	if _, err := migrate.Apply(context.Background(), e.conn, e.db); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(time.Now().Add(-40*time.Minute).Unix()/50*50, 0).UTC() // a bucket's start
	var stored []batch.Row
	for i := range 300 {
		t := at.Add(time.Duration(i) * 5 * time.Second)
		r := row(idOnPartition(fmt.Sprintf("evt_%03d", i), 0), t, 1)
		r.Received = t
		stored = append(stored, r)
	}
	if err := seedInserter(t, e.db).Insert(context.Background(), 0, stored); err != nil {
		t.Fatal(err)
	}
	// Two owned partitions, two sets each, keyset.BytesPerKey a key: 100 keys a set.
	a := e.startConfig(t, nil, func(c *Config) { c.DedupMaxBytes = 2 * 2 * keyset.BytesPerKey * 100 })
	if got := testutil.ToFloat64(a.m.dedupIDs.WithLabelValues("0")); got != 100 {
		t.Fatalf("partition 0's set holds %v ids after start-up, want its bound of 100 (the 300 stored are past it)", got)
	}
	e.publish(t, stored[0], stored[1], stored[2], row(idOnPartition("evt_new", 0), at, 1))
	e.waitDrained(t)
	if got, want := e.query(t, "SELECT toString(count()) FROM {db}.usage_events"), "301"; got != want {
		t.Errorf("usage_events holds %s events, want %s: copies of events the bound dropped were stored again", got, want)
	}
	if got := testutil.ToFloat64(a.m.duplicates); got != 3 {
		t.Errorf("duplicates metric = %v, want 3", got)
	}
}
