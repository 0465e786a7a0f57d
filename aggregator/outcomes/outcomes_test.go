package outcomes

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

type env struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	conn driver.Conn
	db   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(context.Background(), conn, db); err != nil {
		t.Fatalf("migrate %s: %v", db, err)
	}
	return &env{nc: nc, js: js, conn: conn, db: db}
}

// publish stores outs in OUTCOMES as the collector does.
func (e *env) publish(t *testing.T, outs ...stream.Outcome) {
	t.Helper()
	data, err := stream.EncodeOutcomes(nil, outs)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(stream.OutcomesSubject)
	m.Data = data
	m.Header.Set(stream.HeaderSchema, stream.OutcomeSchema)
	if _, err := e.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(stream.OutcomesMsgID(outs))); err != nil {
		t.Fatalf("publish outcomes: %v", err)
	}
}

type running struct {
	*Writer
	reg  *prometheus.Registry
	done chan struct{} // closed when Run returns
	err  error         // what Run returned, once done is closed
}

func (e *env) start(t *testing.T, beforeAck func() error) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := New(Config{ClickHouseDSN: chtest.DSN(), Database: e.db, BatchMaxWait: 20 * time.Millisecond, AckWait: 2 * time.Second, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}, e.nc)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	w.beforeAck = beforeAck
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Writer: w, reg: reg, done: make(chan struct{})}
	go func() { r.err = w.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
	})
	return r
}

func outcome(id, workflow, result string, t time.Time) stream.Outcome {
	if id == "" {
		id = stream.OutcomeID(workflow, result, t)
	}
	return stream.Outcome{ID: id, WorkflowID: workflow, Outcome: result, Time: t, ReceivedAt: t.Add(time.Second)}
}

// rows returns the outcomes table, one line per row, by time.
func (e *env) rows(t *testing.T) string {
	t.Helper()
	return chtest.String(t, e.conn, "SELECT arrayStringConcat(groupArray(line), '\\n') FROM (SELECT concat(outcome_id, ' ', workflow_id, ' ', outcome, ' ', toString(time), ' ', toString(time_ms), ' ', toString(received_at)) AS line FROM "+
		e.db+".outcomes ORDER BY time, outcome_id)")
}

func (e *env) count(t *testing.T) string {
	return chtest.String(t, e.conn, "SELECT toString(count()) FROM "+e.db+".outcomes")
}

var t0 = time.Date(2026, 11, 20, 9, 30, 0, 250_000_000, time.UTC)

func TestWritesEachOutcomeOnce(t *testing.T) {
	e := newEnv(t)
	a := outcome("", "wf-1", "escalated", t0)
	b := outcome("", "wf-1", "resolved", t0.Add(time.Hour))
	c := outcome("client-id-7", "wf-2", "abandoned", t0.Add(2*time.Hour))
	e.publish(t, a, b, a) // a copy within one message
	r := e.start(t, nil)
	testkit.Eventually(t, 20*time.Second, "2 outcomes in ClickHouse", func() bool { return e.count(t) == "2" })
	// A retry of the same request after JetStream's duplicate window, with one more outcome.
	e.publish(t, c, b)
	testkit.Eventually(t, 20*time.Second, "3 outcomes in ClickHouse", func() bool { return e.count(t) == "3" })

	want := strings.Join([]string{
		a.ID + " wf-1 escalated 2026-11-20 09:30:00 250 2026-11-20 09:30:01",
		b.ID + " wf-1 resolved 2026-11-20 10:30:00 250 2026-11-20 10:30:01",
		"client-id-7 wf-2 abandoned 2026-11-20 11:30:00 250 2026-11-20 11:30:01",
	}, "\n")
	if got := e.rows(t); got != want {
		t.Errorf("outcomes table:\n%s\nwant\n%s", got, want)
	}
	if got := chtest.String(t, e.conn, "SELECT arrayStringConcat(groupArray(concat(workflow_id, ' ', outcome, ' ', toString(outcomes))), ',') FROM (SELECT * FROM "+e.db+".workflow_outcomes ORDER BY workflow_id)"); got != "wf-1 resolved 2,wf-2 abandoned 1" {
		t.Errorf("workflow_outcomes = %q, want %q", got, "wf-1 resolved 2,wf-2 abandoned 1")
	}
	if got := testutil.ToFloat64(r.inserted); got != 3 {
		t.Errorf("inserted = %v, want 3", got)
	}
	if got := testutil.ToFloat64(r.duplicates); got != 2 {
		t.Errorf("duplicates = %v, want 2 (a's copy in the first message, b in the retry)", got)
	}
	if err := r.Ready(); err != nil {
		t.Errorf("Ready() = %v, want nil", err)
	}
}

// TestCrashBetweenInsertAndAck stops the writer after its INSERT and before its acks, as a
// kill -9 would; the redelivered message must add nothing.
func TestCrashBetweenInsertAndAck(t *testing.T) {
	e := newEnv(t)
	a := outcome("", "wf-9", "resolved", t0)
	b := outcome("", "wf-10", "resolved", t0)
	e.publish(t, a, b)
	crash := errors.New("crash before ack")
	first := e.start(t, func() error { return crash })
	select {
	case <-first.done:
		if !errors.Is(first.err, crash) {
			t.Fatalf("Run() = %v, want the crash", first.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the writer did not reach its acks within 20s")
	}
	if got := e.count(t); got != "2" {
		t.Fatalf("%s outcomes after the crash, want 2", got)
	}

	acked := make(chan struct{}, 1)
	second := e.start(t, func() error { acked <- struct{}{}; return nil })
	select {
	case <-acked:
	case <-time.After(20 * time.Second):
		t.Fatal("the redelivered message was not processed within 20s")
	}
	if got := e.count(t); got != "2" {
		t.Errorf("%s outcomes after the redelivery, want 2", got)
	}
	if got := testutil.ToFloat64(second.duplicates); got != 2 {
		t.Errorf("duplicates after the redelivery = %v, want 2", got)
	}
	if got := testutil.ToFloat64(second.inserted); got != 0 {
		t.Errorf("inserted after the redelivery = %v, want 0", got)
	}
}

func TestDeadLettersUndecodableMessages(t *testing.T) {
	e := newEnv(t)
	for _, bad := range []struct{ schema, data string }{
		{stream.OutcomeSchema, "not json\n"},
		{"usage-batch/1", `{"id":"x","workflow_id":"w","outcome":"ok","time":"2026-11-20T09:30:00Z"}`},
	} {
		m := nats.NewMsg(stream.OutcomesSubject)
		m.Data = []byte(bad.data)
		m.Header.Set(stream.HeaderSchema, bad.schema)
		if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	good := outcome("", "wf-3", "resolved", t0)
	e.publish(t, good)
	r := e.start(t, nil)
	testkit.Eventually(t, 20*time.Second, "the good outcome in ClickHouse", func() bool { return e.count(t) == "1" })
	testkit.Eventually(t, 20*time.Second, "2 dead letters", func() bool { return testutil.ToFloat64(r.poison) == 2 })

	st, err := e.js.Stream(context.Background(), stream.Dead)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		if m.Subject != "usage.dead.outcomes" {
			t.Errorf("dead letter subject = %q, want usage.dead.outcomes", m.Subject)
		}
		reasons = append(reasons, m.Header.Get(stream.HeaderReason))
	}
	want := []string{
		"outcomes line 1: invalid character 'o' in literal null (expecting 'u')",
		`payload schema "usage-batch/1" is not "outcomes-ndjson/1"`,
	}
	if strings.Join(reasons, "\n") != strings.Join(want, "\n") {
		t.Errorf("reasons =\n%s\nwant\n%s", strings.Join(reasons, "\n"), strings.Join(want, "\n"))
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{ClickHouseDSN: "::bad", Database: "1x", BatchMaxRows: -1, BatchMaxWait: time.Microsecond, AckWait: time.Millisecond}.withDefaults().Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, want := range []string{`-clickhouse "::bad"`, `-database: database name "1x"`, "outcome batch max rows (-1) must be positive",
		"outcome batch max wait (1µs) must be at least 1ms", "outcome ack wait (1ms) must be at least 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %s", err, want)
		}
	}
	if err := (Config{}).withDefaults().Validate(); err != nil {
		t.Errorf("defaults: Validate() = %v", err)
	}
	if _, err := New(Config{}, nil); err == nil || !strings.Contains(err.Error(), "nil NATS connection") {
		t.Errorf("New(nil conn) error = %v", err)
	}
}

// TestWritesAreNotDeduplicated: on a cluster the outcome writer inserts through a Distributed
// table, where a Replicated table would drop a block identical to a recent one, and reads back
// what it wrote; its connection turns de-duplication off and inserts synchronously itself.
func TestWritesAreNotDeduplicated(t *testing.T) {
	e := newEnv(t)
	w, err := New(Config{ClickHouseDSN: chtest.DSN(), Database: e.db}, e.nc)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(w.chOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	chtest.CheckWriterSettings(t, conn)
}
