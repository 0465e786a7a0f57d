//go:build chaos

// The fault-injection suite (issue 3): `go test -tags chaos ./bench/chaos/` (make chaos).
// Every scenario runs the real binaries as processes against a fresh ClickHouse database,
// sends at least 100,000 distinct events, injects its faults, and ends by comparing
// usage_events, spend_1m and spend_1d with the exact expected totals and checking that no
// consumer holds a pending or unacknowledged message.
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/deploy/reconcile"
	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// unique is the number of distinct valid events each scenario sends (the 100,000).
const unique = 100_000

// ackWait is how soon a killed process's unacknowledged messages come back.
const ackWait = 3 * time.Second

var binDir string

// report collects one row of the fault-injection table (docs/architecture.md) per scenario.
var report struct {
	sync.Mutex
	rows []string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokenmeter-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	err = Build(ctx, dir, "testhooks")
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if len(report.rows) > 0 {
		// By scenario number: "| 10. …" after "| 9. …".
		num := func(row string) int {
			n, _ := strconv.Atoi(strings.TrimLeft(row[:strings.Index(row, ".")], "| "))
			return n
		}
		sort.SliceStable(report.rows, func(i, j int) bool { return num(report.rows[i]) < num(report.rows[j]) })
		fmt.Println("| scenario | events | faults injected | lost | doubled |")
		fmt.Println("| --- | ---: | --- | ---: | ---: |")
		for _, r := range report.rows {
			fmt.Println(r)
		}
	}
	os.Exit(code)
}

// run is one scenario's cluster, database and expectations.
type run struct {
	t      *testing.T
	c      *Cluster
	conn   driver.Conn
	db     string
	js     jetstream.JetStream
	cat    *pricing.Catalog
	sender *Sender
	rng    *rand.Rand
	// extra are events the scenario published itself (not through the sender) that must
	// be stored.
	extra []event.Usage
}

func newRun(t *testing.T, pricingDir string, env map[string][]string, edit ...func(*Config)) *run {
	t.Helper()
	return newRunOn(t, chtest.DSN(), chtest.Conn(t), pricingDir, env, edit...)
}

// newRunOn starts a cluster writing to a fresh database of the ClickHouse server at dsn,
// which conn is connected to.
func newRunOn(t *testing.T, dsn string, conn driver.Conn, pricingDir string, env map[string][]string, edit ...func(*Config)) *run {
	t.Helper()
	db := chtest.Database(t, conn)
	work := t.TempDir()
	cfg := Config{BinDir: binDir, WorkDir: work, ClickHouseDSN: dsn, Database: db, PricingDir: pricingDir, AckWait: ackWait}
	for _, e := range edit {
		e(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, e := range env {
		c.SetEnv(name, e...)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("stop the cluster: %v", err)
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(work, "*.log"))
			// The whole logs outlive the test's directory, for the diagnosis.
			keep := filepath.Join(os.TempDir(), "tokenmeter-chaos-logs", t.Name()+"-"+time.Now().UTC().Format("150405"))
			if err := os.MkdirAll(keep, 0o755); err == nil {
				for _, l := range logs {
					if data, err := os.ReadFile(l); err == nil {
						_ = os.WriteFile(filepath.Join(keep, filepath.Base(l)), data, 0o644)
					}
				}
				t.Logf("whole logs kept in %s", keep)
			}
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				if len(data) > 3000 {
					data = data[len(data)-3000:]
				}
				t.Logf("--- %s (tail)\n%s", filepath.Base(l), data)
			}
		}
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start the cluster: %v", err)
	}
	nc, err := nats.Connect(c.NATSURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := loadCatalog(pricingDir)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	return &run{
		t: t, c: c, conn: conn, db: db, js: js, cat: cat, rng: rand.New(rand.NewPCG(seed, 7)),
		sender: &Sender{URL: c.CollectorURL(), BodyEvents: 1000, Clients: 4},
	}
}

func loadCatalog(dir string) (*pricing.Catalog, error) {
	if dir == "" {
		return pricing.Default()
	}
	return pricing.LoadDir(dir)
}

// generator returns a deterministic event stream ending now.
func generator(seed uint64, edit func(*loadgen.Config)) *loadgen.Generator {
	cfg := loadgen.DefaultConfig(time.Now().UTC())
	cfg.Seed = seed
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return loadgen.New(cfg)
}

// sendInBackground sends unique events from gen and returns a channel that receives Send's
// result.
func (r *run) sendInBackground(gen *loadgen.Generator, n int) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.sender.Send(context.Background(), gen, n) }()
	return done
}

// expected is every distinct event that was accepted.
func (r *run) expected() []event.Usage {
	return append(append([]event.Usage(nil), r.sender.Tally().Events()...), r.extra...)
}

// settle waits until ClickHouse holds at least want events and no consumer has anything
// pending or unacknowledged.
func (r *run) settle(want uint64) {
	r.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(3 * time.Minute)
	state := ""
	for time.Now().Before(deadline) {
		rows, _, err := Stored(ctx, r.conn, r.db)
		busy := ""
		if err == nil {
			busy, err = Busy(ctx, r.js)
		}
		if err != nil {
			state = err.Error()
		} else if rows >= want && busy == "" {
			return
		} else {
			state = fmt.Sprintf("%d of %d events stored; %s", rows, want, busy)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("the pipeline did not settle within 3 minutes: %s", state)
}

// check compares every table with the exact expected totals and records the scenario's row
// of the fault-injection table.
func (r *run) check(scenario, faults string) {
	r.t.Helper()
	events := r.expected()
	want := Expect(r.cat, events)
	r.settle(want.Events)
	ctx := context.Background()
	for _, tb := range Tables {
		got, err := Measure(ctx, r.conn, r.db, tb.Name)
		if err != nil {
			r.t.Fatal(err)
		}
		if !got.Equal(want) {
			r.t.Errorf("%s:\n got %s\nwant %s", tb.Name, got, want)
		}
	}
	rows, distinct, err := Stored(ctx, r.conn, r.db)
	if err != nil {
		r.t.Fatal(err)
	}
	lost, doubled := int64(want.Events)-int64(distinct), int64(rows)-int64(distinct)
	if lost != 0 || doubled != 0 {
		r.t.Errorf("lost %d, doubled %d (usage_events holds %d rows, %d distinct ids; %d accepted)", lost, doubled, rows, distinct, want.Events)
		r.logDoubles()
	}
	if want.Unpriced == 0 {
		r.t.Errorf("no unpriced event in the traffic; the totals would not cover them")
	}
	// The operators' check agrees: every id USAGE_RAW accepted is stored once.
	partitions := r.c.cfg.Partitions
	if partitions == 0 {
		partitions = stream.DefaultPartitions
	}
	parts, err := reconcile.Check(ctx, r.js, r.conn, r.db, partitions)
	if err != nil {
		r.t.Fatal(err)
	}
	unknown := 0
	for _, p := range parts {
		if !p.OK() {
			r.t.Errorf("reconcile partition %d: %d missing %v, %d doubled %v", p.Partition, p.MissingN, p.Missing, p.DoubledN, p.Doubled)
		}
		unknown += p.UnknownN
	}
	if unknown != len(r.extra) {
		r.t.Errorf("reconcile: %d ids stored without a raw message, want the %d the test published to USAGE_ENRICHED itself", unknown, len(r.extra))
	}
	r.t.Logf("%s: %d events (%d accepted bodies retried); %s; lost %d, doubled %d; totals %s",
		scenario, want.Events, r.sender.Retries(), faults, lost, doubled, want)
	report.Lock()
	report.rows = append(report.rows, fmt.Sprintf("| %s (`%s`) | %d | %s | %d | %d |", scenario, r.t.Name(), want.Events, faults, lost, doubled))
	report.Unlock()
}

// logDoubles logs the first event ids stored more than once, with where and when each copy
// was written, for the diagnosis.
func (r *run) logDoubles() {
	rows, err := r.conn.Query(context.Background(), `SELECT event_id, toString(count()), arrayStringConcat(groupArray(toString(partition)), ','),
		arrayStringConcat(groupArray(toString(ingested_at)), ','), arrayStringConcat(groupArray(_part), ','), arrayStringConcat(groupArray(toString(cost_usd)), ',')
		FROM `+r.db+`.usage_events GROUP BY event_id HAVING count() > 1 LIMIT 20`)
	if err != nil {
		r.t.Logf("list doubled ids: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var id, n, parts, ingested, dataParts, costs string
		if err := rows.Scan(&id, &n, &parts, &ingested, &dataParts, &costs); err != nil {
			r.t.Logf("list doubled ids: %v", err)
			return
		}
		r.t.Logf("doubled: %s × %s: partitions %s, ingested %s, parts %s, costs %s", id, n, parts, ingested, dataParts, costs)
	}
}

// logLines counts the lines of every log of the named process that contain text.
func (r *run) logLines(name, text string) int {
	logs, _ := filepath.Glob(filepath.Join(r.c.cfg.WorkDir, name+"-*.log"))
	n := 0
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			r.t.Fatal(err)
		}
		n += strings.Count(string(data), text)
	}
	return n
}

// fenceNote says how often a restarted aggregator waited for an INSERT its killed predecessor
// left running in ClickHouse (aggregate.awaitNoInserts).
func (r *run) fenceNote() string {
	return fmt.Sprintf("; a restart waited for a dead predecessor's INSERT %d times", r.logLines(Aggregator, "waiting for INSERTs of a previous aggregator"))
}

// between returns a random duration in [lo, hi).
func (r *run) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// killLoop kills one of names (picked at random each time) with SIGKILL at random moments
// and restarts it, until sending is done and at least min kills happened. It returns the
// number of kills.
func (r *run) killLoop(names []string, min int, sending <-chan error) int {
	r.t.Helper()
	kills := 0
	var sendErr error
	sent := false
	for !sent || kills < min {
		select {
		case sendErr = <-sending:
			sent = true
			if sendErr != nil {
				r.t.Fatalf("send: %v", sendErr)
			}
		case <-time.After(r.between(200*time.Millisecond, 900*time.Millisecond)):
		}
		name := names[r.rng.IntN(len(names))]
		if err := r.c.Kill(name); err != nil {
			r.t.Fatal(err)
		}
		kills++
		time.Sleep(r.between(0, 200*time.Millisecond))
		if _, err := r.c.StartProc(context.Background(), name); err != nil {
			r.t.Fatalf("restart %s after kill %d: %v", name, kills, err)
		}
	}
	return kills
}

// Scenario 1: kill -9 the enricher at 20+ random moments during a run, restarting it each time.
func TestKillEnricher(t *testing.T) {
	r := newRun(t, "", nil)
	r.sender.Rate = 5000
	kills := r.killLoop([]string{Enricher}, 20, r.sendInBackground(generator(101, nil), unique))
	r.check("1a. kill -9 the enricher at random moments, restart", fmt.Sprintf("%d × SIGKILL enricher", kills))
}

// Scenario 1: kill -9 the aggregator at 20+ random moments during a run, restarting it each
// time.
func TestKillAggregator(t *testing.T) {
	r := newRun(t, "", nil)
	r.sender.Rate = 5000
	kills := r.killLoop([]string{Aggregator}, 20, r.sendInBackground(generator(102, nil), unique))
	r.check("1b. kill -9 the aggregator at random moments, restart", fmt.Sprintf("%d × SIGKILL aggregator", kills)+r.fenceNote())
}

// counter reads one counter or gauge (without labels) from a stage's /metrics.
func (r *run) counter(name, metric string) float64 {
	r.t.Helper()
	resp, err := http.Get(r.c.OpsURL(name) + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + ` (\S+)$`).FindSubmatch(data)
	if m == nil {
		r.t.Fatalf("%s /metrics has no %s", name, metric)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

// Scenario 2: the aggregator dies right after a ClickHouse INSERT succeeded and before the
// acks (TOKENMETER_TEST_EXIT_AFTER_INSERT), again and again; every restart finds the
// inserted rows in the set it rebuilds from ClickHouse and skips their redelivery.
func TestAggregatorDiesBetweenInsertAndAck(t *testing.T) {
	// Each crash needs traffic left to insert: 200,000 events at 4,000/s last 50 s, room for
	// twelve restarts of up to 4 s each (the start-up roll-up check included).
	const crashes, events = 12, 2 * unique
	r := newRun(t, "", map[string][]string{Aggregator: {"TOKENMETER_TEST_EXIT_AFTER_INSERT=1"}})
	r.sender.Rate = 4000
	sending := r.sendInBackground(generator(103, nil), events)
	n := 0
	var before uint64
	for n < crashes {
		p := r.c.Proc(Aggregator)
		select {
		case <-p.Exited():
		case <-time.After(2 * time.Minute):
			t.Fatalf("the aggregator did not exit after an insert within 2 minutes (crash %d)", n+1)
		}
		if code := p.ExitCode(); code != 3 {
			t.Fatalf("the aggregator exited with %d, want 3 from the test hook; log %s", code, p.Log)
		}
		n++
		rows, _, err := Stored(context.Background(), r.conn, r.db)
		if err != nil {
			t.Fatal(err)
		}
		if rows <= before {
			t.Fatalf("crash %d: usage_events holds %d rows, no more than before (%d): the hook fired without an insert", n, rows, before)
		}
		before = rows
		if n == crashes {
			r.c.SetEnv(Aggregator)
		}
		// The new process may insert and die again before it answers /readyz.
		if p, err := r.c.StartProc(context.Background(), Aggregator); err != nil && (p == nil || p.ExitCode() != 3) {
			t.Fatalf("restart the aggregator: %v", err)
		}
	}
	if err := <-sending; err != nil {
		t.Fatal(err)
	}
	r.check("2. aggregator exits between a ClickHouse insert and its ack (test hook), restart", fmt.Sprintf("%d × exit after insert, before ack", n)+r.fenceNote())
}

// streamConfig returns the configuration of the named stream as the stages create it.
func streamConfig(name string) jetstream.StreamConfig {
	for _, c := range stream.Configs(stream.DefaultOptions) {
		if c.Name == name {
			return c
		}
	}
	panic("no stream " + name)
}

// shrinkDuplicateWindow sets the JetStream duplicate window of the named stream.
func (r *run) shrinkDuplicateWindow(name string, d time.Duration) {
	r.t.Helper()
	cfg := streamConfig(name)
	cfg.Duplicates = d
	if _, err := r.js.UpdateStream(context.Background(), cfg); err != nil {
		r.t.Fatalf("shrink the duplicate window of %s: %v", name, err)
	}
}

// deadLetters returns the reasons of every USAGE_DEAD message, by subject.
func (r *run) deadLetters() map[string][]string {
	r.t.Helper()
	out := map[string][]string{}
	for _, m := range rawMessages(r.t, r.js, stream.Dead) {
		out[m.Subject] = append(out[m.Subject], m.Header.Get(stream.HeaderReason))
	}
	return out
}

func rawMessages(tb testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	tb.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, name)
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
			tb.Fatalf("read message %d of %s: %v", seq, name, err)
		}
		out = append(out, m)
	}
	return out
}

// Scenario 5: bodies sent again after JetStream's duplicate window has passed are counted
// once; the same ids with different content are counted once (the first copy) and each
// conflict is reported by a metric and a USAGE_DEAD record.
func TestSameIDAfterDuplicateWindowAndConflictingContent(t *testing.T) {
	const resentBodies, conflicts = 20, 500
	r := newRun(t, "", nil)
	r.shrinkDuplicateWindow(stream.Raw, time.Second)
	gen := generator(105, nil)
	ctx := context.Background()
	var first [][]loadgen.Item
	for range resentBodies {
		items := make([]loadgen.Item, 1000)
		for i := range items {
			items[i] = gen.Next()
		}
		if err := r.sender.Post(ctx, items); err != nil {
			t.Fatal(err)
		}
		first = append(first, items)
	}
	if err := r.sender.Send(ctx, gen, unique); err != nil {
		t.Fatal(err)
	}
	r.settle(uint64(len(r.sender.Tally().Events())))
	time.Sleep(1500 * time.Millisecond) // past the window

	// The same bytes again, then the same ids with one more output token each.
	for _, items := range first {
		if err := r.sender.Post(ctx, items); err != nil {
			t.Fatal(err)
		}
	}
	var changed []loadgen.Item
	for _, items := range first {
		for _, it := range items {
			if it.Kind != loadgen.Valid || len(changed) == conflicts {
				continue
			}
			u := it.Event
			u.Usage.Output++
			data, err := json.Marshal(&u)
			if err != nil {
				t.Fatal(err)
			}
			changed = append(changed, loadgen.Item{Event: u, JSON: data, Kind: loadgen.Duplicate})
		}
	}
	// Not through the sender: its tally must keep the first copies.
	if err := (&Sender{URL: r.c.CollectorURL()}).Post(ctx, changed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fmt.Sprintf("%d conflicts reported", conflicts), func() bool {
		return r.counter(Aggregator, "tokenmeter_aggregator_conflicts_total") >= conflicts
	})
	r.check("5. bodies re-sent after the duplicate window (1 s); same ids with different content",
		fmt.Sprintf("%d bodies (%d events) re-sent after the window; %d conflicting copies", resentBodies, resentBodies*1000, conflicts))
	if got := r.counter(Aggregator, "tokenmeter_aggregator_conflicts_total"); got != conflicts {
		t.Errorf("conflicts metric = %v, want %d", got, conflicts)
	}
	dead := r.deadLetters()
	reasons := dead[stream.DeadSubject("aggregator")]
	if len(reasons) != conflicts || len(dead) != 1 {
		t.Fatalf("USAGE_DEAD holds %d aggregator records (%d subjects), want %d conflicts", len(reasons), len(dead), conflicts)
	}
	for _, reason := range reasons {
		if !strings.HasPrefix(reason, "conflict: event id ") {
			t.Errorf("dead letter reason %q is not a conflict", reason)
			break
		}
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testkit.Eventually(tb, 2*time.Minute, what, cond)
}

// monthBoundary returns the latest start of a month at least 12 hours ago, so that a day of
// traffic around it is accepted (not older than 35 days, not in the future).
func monthBoundary(now time.Time) time.Time {
	b := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	if now.Sub(b) < 12*time.Hour {
		b = b.AddDate(0, -1, 0)
	}
	return b
}

// Scenario 6: batches whose events fall into two monthly ClickHouse partitions. A crash
// between the two parts of an INSERT is recreated exactly — the first month's rows of the
// first batches of each partition are written as the aggregator would have, the second
// month's are not — and the aggregator then dies once more after a real two-month insert.
func TestBatchAcrossTwoMonthsWithCrashBetweenWrites(t *testing.T) {
	r := newRun(t, "", nil)
	boundary := monthBoundary(time.Now().UTC())
	// No invalid events: their rules (e.g. "in the future") are relative to Now, which lies in
	// the past here.
	gen := generator(106, func(c *loadgen.Config) { c.Now, c.Span, c.InvalidShare = boundary.Add(time.Hour), 2*time.Hour, 0 })
	if err := r.c.Stop(Aggregator); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.sender.Send(ctx, gen, unique); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the enricher to drain USAGE_RAW", func() bool {
		c, err := r.js.Consumer(ctx, stream.Raw, "enricher")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})

	// The half-landed INSERT: month one of the first ten messages of every partition.
	byPart := map[int][]batch.Row{}
	msgs := map[int]int{}
	for _, m := range streamtest.Messages(t, r.js, stream.Enriched) {
		p, err := strconv.Atoi(strings.TrimPrefix(m.Subject, stream.EnrichedPrefix))
		if err != nil {
			t.Fatal(err)
		}
		if msgs[p]++; msgs[p] > 10 {
			continue
		}
		for _, row := range m.Rows {
			if row.Time.Before(boundary) {
				byPart[p] = append(byPart[p], row)
			}
		}
	}
	w, err := chwrite.NewInserterForDSN(r.c.cfg.ClickHouseDSN, r.db)
	if err != nil {
		t.Fatal(err)
	}
	months := map[bool]int{}
	landed := 0
	for p, rows := range byPart {
		seen := map[string]bool{}
		kept := rows[:0]
		for _, row := range rows {
			if !seen[row.ID] {
				seen[row.ID] = true
				kept = append(kept, row)
			}
		}
		if err := w.Insert(ctx, p, kept); err != nil {
			t.Fatal(err)
		}
		landed += len(kept)
	}
	for _, u := range r.sender.Tally().Events() {
		months[u.Time.Before(boundary)]++
	}
	if months[true] < 1000 || months[false] < 1000 || landed == 0 {
		t.Fatalf("events before / after %s: %d / %d, half-landed rows %d; want both months well covered", boundary.Format(time.RFC3339), months[true], months[false], landed)
	}

	r.c.SetEnv(Aggregator, "TOKENMETER_TEST_EXIT_AFTER_INSERT=1")
	p, err := r.c.StartProc(ctx, Aggregator)
	if err != nil && p == nil {
		t.Fatal(err)
	}
	<-p.Exited()
	if code := p.ExitCode(); code != 3 {
		t.Fatalf("the aggregator exited with %d, want 3 from the test hook", code)
	}
	r.c.SetEnv(Aggregator)
	if _, err := r.c.StartProc(ctx, Aggregator); err != nil {
		t.Fatal(err)
	}
	r.check("6. batches across two months; first month's part landed, crash; exit after insert",
		fmt.Sprintf("%d rows of one month pre-landed, aggregator started after them; 1 × exit after insert", landed))
	var parts string
	if err := r.conn.QueryRow(ctx, "SELECT toString(uniqExact(partition)) FROM system.parts WHERE database = ? AND table = 'usage_events' AND active", r.db).Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts != "2" && parts != "3" {
		t.Errorf("usage_events spans %s monthly partitions, want 2 (3 with late events)", parts)
	}
}

// Scenario 7: poison in the middle of the partitions — undecodable raw and enriched messages,
// a message with a foreign schema, an event on the wrong partition, rows with impossible
// values beside a good row — is quarantined with its reason while the traffic flows.
func TestPoisonMessagesAreQuarantined(t *testing.T) {
	r := newRun(t, "", nil)
	r.sender.Rate = 20000
	sending := r.sendInBackground(generator(107, nil), unique)
	ctx := context.Background()
	publish := func(subject string, data []byte, schema string) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = data
		if schema != "" {
			m.Header.Set(stream.HeaderSchema, schema)
		}
		if _, err := r.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	encode := func(rows ...batch.Row) []byte {
		data, err := batch.Encode(rows)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	goodRow := func(i int) (event.Usage, batch.Row) {
		u := event.Usage{ID: fmt.Sprintf("poison-neighbour-%d", i), Time: now, Provider: "acme", Model: "acme-llm-7",
			Operation: "chat", ServiceTier: event.TierStandard, Status: event.StatusOK,
			Usage: event.Tokens{Input: 100 + int64(i), Output: 10}, Tags: map[string]string{event.TagTeam: "search"}}
		return u, batch.FromUsage(&u, now, stream.Partition(u.ID, stream.DefaultPartitions))
	}
	const rounds = 4
	for i := range rounds {
		time.Sleep(time.Second)
		p := i % stream.DefaultPartitions
		publish(stream.RawSubject(p), []byte("not arrow at all"), batch.SchemaName)
		publish(stream.RawSubject(p), []byte("{}"), "usage-batch/99")
		publish(stream.EnrichedSubject(p), []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, batch.SchemaName)
		// An event published on a partition that is not its own.
		u, wrong := goodRow(1000 + i)
		wrong.Partition = (stream.Partition(u.ID, stream.DefaultPartitions) + 1) % stream.DefaultPartitions
		publish(stream.EnrichedSubject(wrong.Partition), encode(wrong), batch.SchemaName)
		// Impossible values beside a good row, in one message.
		u, good := goodRow(i)
		bad := good
		bad.ID, bad.Tokens.Reasoning = good.ID+"-bad", 11
		for j := 0; stream.Partition(bad.ID, stream.DefaultPartitions) != good.Partition; j++ {
			bad.ID = fmt.Sprintf("%s-bad-%d", good.ID, j)
		}
		publish(stream.EnrichedSubject(good.Partition), encode(bad, good), batch.SchemaName)
		r.extra = append(r.extra, u)
	}
	if err := <-sending; err != nil {
		t.Fatal(err)
	}
	r.check("7. poison mid-partition: undecodable, foreign schema, wrong partition, impossible values",
		fmt.Sprintf("%d poison messages (%d raw, %d enriched)", 5*rounds, 2*rounds, 3*rounds))

	dead := r.deadLetters()
	classes := map[string]int{}
	for subject, reasons := range dead {
		for _, reason := range reasons {
			switch {
			case subject == stream.DeadSubject("enricher") && strings.Contains(reason, "usage-batch/99"):
				classes["raw foreign schema"]++
			case subject == stream.DeadSubject("enricher"):
				classes["raw undecodable"]++
			case strings.Contains(reason, "belongs to partition"):
				classes["wrong partition"]++
			case strings.HasPrefix(reason, "impossible values: ") && strings.Contains(reason, "reasoning_tokens (11) exceed output_tokens (10)"):
				classes["impossible"]++
			default:
				classes["enriched undecodable: "+reason[:min(len(reason), 40)]]++
			}
		}
	}
	want := map[string]int{"raw foreign schema": rounds, "raw undecodable": rounds, "wrong partition": rounds, "impossible": rounds}
	for k, v := range classes {
		if strings.HasPrefix(k, "enriched undecodable: ") {
			want[k] = v
		}
	}
	undecodable := 0
	for k, v := range classes {
		if strings.HasPrefix(k, "enriched undecodable: ") {
			undecodable += v
		}
	}
	if undecodable != rounds {
		t.Errorf("%d undecodable enriched messages quarantined, want %d", undecodable, rounds)
	}
	for k, v := range want {
		if classes[k] != v {
			t.Errorf("quarantined %q: %d, want %d (all: %v)", k, classes[k], v, classes)
		}
	}
}

// Scenario 8: late events arriving after their minute was rolled up (spend_1m and spend_1d
// merged with OPTIMIZE … FINAL) still land in it, and the roll-ups stay exact.
func TestLateEventsAfterRollup(t *testing.T) {
	r := newRun(t, "", nil)
	ctx := context.Background()
	if err := r.sender.Send(ctx, generator(108, func(c *loadgen.Config) { c.LateShare = 0 }), unique/2); err != nil {
		t.Fatal(err)
	}
	r.settle(uint64(len(r.sender.Tally().Events())))
	minutes := map[int64]bool{}
	for _, u := range r.sender.Tally().Events() {
		minutes[u.Time.Unix()/60] = true
	}
	for _, table := range []string{"spend_1m", "spend_1d"} {
		if err := r.conn.Exec(ctx, "OPTIMIZE TABLE "+r.db+"."+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	first := len(r.sender.Tally().Events())
	late := generator(1108, func(c *loadgen.Config) {
		c.LateShare, c.LateMin, c.LateMax = 1, time.Millisecond, 30*time.Minute
	})
	if err := r.sender.Send(ctx, late, unique/2); err != nil {
		t.Fatal(err)
	}
	inRolledUp := 0
	for _, u := range r.sender.Tally().Events()[first:] {
		if minutes[u.Time.Unix()/60] {
			inRolledUp++
		}
	}
	if inRolledUp < unique/4 {
		t.Fatalf("only %d late events fall into minutes already rolled up; want at least %d", inRolledUp, unique/4)
	}
	r.check("8. late events after their minute was rolled up (OPTIMIZE … FINAL)",
		fmt.Sprintf("%d late events into %d rolled-up minutes", inRolledUp, len(minutes)))
}

// Scenario 9: the price files change between the first delivery of the events and a
// redelivery of every raw message to a restarted enricher: the events keep their first price.
func TestPriceChangeBetweenDeliveries(t *testing.T) {
	shipped, err := filepath.Glob("../../enricher/pricing/catalog/*.yaml")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("shipped price files: %v (%d)", err, len(shipped))
	}
	before, after := t.TempDir(), t.TempDir()
	for _, f := range shipped {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(before, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		// Every output price gains a leading 1: "10.00" becomes "110.00".
		changed := strings.ReplaceAll(string(data), `output: "`, `output: "1`)
		if err := os.WriteFile(filepath.Join(after, filepath.Base(f)), []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	catAfter, err := pricing.LoadDir(after)
	if err != nil {
		t.Fatalf("changed price files: %v", err)
	}
	r := newRun(t, before, nil)
	ctx := context.Background()
	if err := r.sender.Send(ctx, generator(109, nil), unique); err != nil {
		t.Fatal(err)
	}
	r.settle(uint64(len(r.sender.Tally().Events())))

	// Redeliver everything: the enricher restarts with changed prices, and every raw message
	// is published again from its copy in USAGE_HISTORY (an operator's replay) once the
	// duplicate windows have passed.
	if err := r.c.Kill(Enricher); err != nil {
		t.Fatal(err)
	}
	r.shrinkDuplicateWindow(stream.Raw, time.Second)
	r.shrinkDuplicateWindow(stream.Enriched, time.Second)
	time.Sleep(2 * time.Second)
	r.c.SetPricingDir(after)
	if _, err := r.c.StartProc(ctx, Enricher); err != nil {
		t.Fatal(err)
	}
	enrichedBefore := streamState(t, r.js, stream.Enriched).LastSeq
	rawCount := replayRaw(t, r.js)
	waitFor(t, "every raw message enriched again", func() bool { return streamState(t, r.js, stream.Enriched).LastSeq >= enrichedBefore+rawCount })
	r.settle(uint64(len(r.sender.Tally().Events())))

	r.check("9. price files change, then every raw message is redelivered and re-priced",
		fmt.Sprintf("%d raw messages re-enriched with changed prices after the duplicate window", rawCount))
	if again := Expect(catAfter, r.expected()); again.Cost.Equal(Expect(r.cat, r.expected()).Cost) {
		t.Fatalf("the changed price files give the same cost %s; the scenario would prove nothing", again.Cost)
	}
	var versions uint64
	if err := r.conn.QueryRow(ctx, "SELECT uniqExact(price_version) FROM "+r.db+".usage_events").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if versions == 0 {
		t.Error("no price_version recorded")
	}
}

// replayRaw publishes every raw message copied into USAGE_HISTORY to USAGE_RAW again, with
// its headers (its Nats-Msg-Id included), and returns how many it published.
func replayRaw(tb testing.TB, js jetstream.JetStream) uint64 {
	tb.Helper()
	ctx := context.Background()
	h, err := js.Stream(ctx, stream.History)
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := h.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{stream.RawPrefix + "*"}})
	if err != nil {
		tb.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	n := info.NumPending
	for left := n; left > 0; {
		mb, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		got := 0
		for m := range mb.Messages() {
			got++
			pm := &nats.Msg{Subject: m.Subject(), Header: nats.Header{}, Data: m.Data()}
			for k, v := range m.Headers() {
				if !strings.HasPrefix(k, "Nats-Stream-Source") {
					pm.Header[k] = v
				}
			}
			if _, err := js.PublishMsg(ctx, pm); err != nil {
				tb.Fatalf("replay a raw message: %v", err)
			}
		}
		if got == 0 {
			tb.Fatalf("replay: no message within 5s, %d left: %v", left, mb.Error())
		}
		left -= uint64(got)
	}
	return n
}

// streamState is the state of the named stream.
func streamState(tb testing.TB, js jetstream.JetStream, name string) jetstream.StreamState {
	tb.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return info.State
}

// Scenario 4: the nats-server process is killed with SIGKILL mid-run, several times, and
// restarted on its file store; the collector answers 503 meanwhile and the clients retry;
// every stage reconnects; nothing acknowledged is lost.
func TestKillNATSServer(t *testing.T) {
	const kills = 3
	r := newRun(t, "", nil)
	r.sender.Rate = 6000
	sending := r.sendInBackground(generator(104, nil), unique)
	for i := range kills {
		time.Sleep(r.between(2*time.Second, 4*time.Second))
		if err := r.c.Kill(NATS); err != nil {
			t.Fatal(err)
		}
		time.Sleep(r.between(500*time.Millisecond, 1500*time.Millisecond))
		if _, err := r.c.StartProc(context.Background(), NATS); err != nil {
			t.Fatalf("restart nats-server after kill %d: %v", i+1, err)
		}
	}
	if err := <-sending; err != nil {
		t.Fatal(err)
	}
	if r.sender.Retries() == 0 {
		t.Error("no body was retried: the collector never noticed NATS was gone")
	}
	r.check("4. kill -9 nats-server mid-run, restart on its file store",
		fmt.Sprintf("%d × SIGKILL nats-server; %d bodies retried after 503 or no answer", kills, r.sender.Retries()))
}

// Scenario 10: USAGE_RAW is full — its enricher is down and an operator sized the stream
// down to 4 MiB (DiscardNew): the collector refuses with 429, the clients retry the same
// bodies, the stream does not grow while full, and once the operator gives it room and the
// enricher is back everything flows, nothing lost or doubled.
func TestFullStream(t *testing.T) {
	r := newRun(t, "", nil)
	if err := r.c.Stop(Enricher); err != nil {
		t.Fatal(err)
	}
	small := streamConfig(stream.Raw)
	small.MaxBytes = 4 << 20
	if _, err := r.js.UpdateStream(context.Background(), small); err != nil {
		t.Fatal(err)
	}
	sending := r.sendInBackground(generator(110, nil), unique)
	waitFor(t, "the collector to refuse bodies", func() bool { return r.sender.Retries() >= 10 })
	full := streamState(t, r.js, stream.Raw).Msgs
	time.Sleep(2 * time.Second)
	if again := streamState(t, r.js, stream.Raw).Msgs; again != full {
		t.Fatalf("USAGE_RAW went from %d to %d messages while full", full, again)
	}
	if _, err := r.js.UpdateStream(context.Background(), streamConfig(stream.Raw)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.StartProc(context.Background(), Enricher); err != nil {
		t.Fatal(err)
	}
	if err := <-sending; err != nil {
		t.Fatal(err)
	}
	r.check("10. USAGE_RAW full (enricher down, MaxBytes 4 MiB, DiscardNew), then given room and its enricher",
		fmt.Sprintf("stream full at %d messages; %d bodies refused with 429 and retried", full, r.sender.Retries()))
}

// privateClickHouse starts a ClickHouse server of its own (deploy/clickhouse/local.sh with a
// private data directory and ports) that the test may stop and start; the shared server on
// :9000 is never touched. It returns the DSN and the script's environment.
//
// A port found free can be taken by another process's outgoing connection before ClickHouse
// binds it (the stages open many), so a start that fails is tried again on other ports.
func privateClickHouse(t *testing.T) (dsn, httpURL string, env []string) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var tcp, http int
		if tcp, err = freePort(); err != nil {
			t.Fatal(err)
		}
		if http, err = freePort(); err != nil {
			t.Fatal(err)
		}
		env = append(os.Environ(), "TOKENMETER_CH_DIR="+t.TempDir(),
			"TOKENMETER_CH_TCP_PORT="+strconv.Itoa(tcp), "TOKENMETER_CH_HTTP_PORT="+strconv.Itoa(http))
		if err = runLocalSH(env, "start"); err != nil {
			t.Logf("private ClickHouse, attempt %d: %v", attempt, err)
			_ = runLocalSH(env, "stop")
			continue
		}
		t.Cleanup(func() { localSH(t, env, "stop") })
		return "clickhouse://127.0.0.1:" + strconv.Itoa(tcp), "http://127.0.0.1:" + strconv.Itoa(http), env
	}
	t.Fatalf("start a private ClickHouse: %v", err)
	return "", "", nil
}

func localSH(t *testing.T, env []string, verb string) {
	t.Helper()
	if err := runLocalSH(env, verb); err != nil {
		t.Fatal(err)
	}
}

func runLocalSH(env []string, verb string) error {
	cmd := exec.Command("../../deploy/clickhouse/local.sh", verb)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("deploy/clickhouse/local.sh %s: %v\n%s", verb, err, out)
	}
	return nil
}

// ready reports whether a stage's /readyz answers 200.
func (r *run) ready(name string) bool {
	resp, err := http.Get(r.c.OpsURL(name) + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Scenario 3: ClickHouse is stopped for 30 s mid-run, then started again. The aggregator
// reports not ready, backs off behind its breaker, dead-letters nothing, and drains the
// backlog once ClickHouse is back.
func TestClickHouseStopped30s(t *testing.T) {
	const outage = 30 * time.Second
	dsn, httpURL, env := privateClickHouse(t)
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Not the standard ports, so the aggregator is told where ClickHouse's HTTP interface is.
	r := newRunOn(t, dsn, conn, "", map[string][]string{Aggregator: {"TOKENMETER_CLICKHOUSE_HTTP=" + httpURL}})
	// 250,000 events at 5,000/s: traffic goes on through the whole outage (5 s before it, up
	// to 30 s for ClickHouse to shut down, 30 s down). With 100,000 (20 s) the last INSERT
	// could land before ClickHouse was gone, and then the aggregator never met the outage.
	r.sender.Rate = 5000
	sending := r.sendInBackground(generator(111, nil), 250_000)
	time.Sleep(5 * time.Second)
	stopped := time.Now()
	localSH(t, env, "stop")
	waitFor(t, "the aggregator to report not ready", func() bool { return !r.ready(Aggregator) })
	notReadyAfter := time.Since(stopped)
	time.Sleep(time.Until(stopped.Add(outage)))
	if r.ready(Aggregator) {
		t.Errorf("the aggregator reports ready %s into the ClickHouse outage", outage)
	}
	localSH(t, env, "start")
	if err := <-sending; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the aggregator to be ready again", func() bool { return r.ready(Aggregator) })
	r.check("3. ClickHouse stopped for 30 s mid-run, then started",
		fmt.Sprintf("ClickHouse down %s (aggregator not ready after %s)", outage, notReadyAfter.Round(100*time.Millisecond)))
	if dead := r.deadLetters(); len(dead) != 0 {
		t.Errorf("dead letters after a transient outage: %v", dead)
	}
}

// Scenario 11: the scaled-out shape — four partitions, two enrichers sharing one durable
// consumer, two aggregators owning two partitions each — with kill -9 of any one of the
// four stage processes at random moments, each restarted.
func TestKillScaledOutStages(t *testing.T) {
	r := newRun(t, "", nil, func(c *Config) { c.Partitions, c.Enrichers, c.Aggregators = 4, 2, 2 })
	r.sender.Rate = 5000
	victims := []string{Instance(Enricher, 0), Instance(Enricher, 1), Instance(Aggregator, 0), Instance(Aggregator, 1)}
	kills := r.killLoop(victims, 20, r.sendInBackground(generator(112, nil), unique))
	// Each aggregator writes only its own partitions (0,2 and 1,3), so the exact totals
	// below hold only if both wrote.
	r.check("11. 2 enrichers + 2 aggregators on 4 partitions, kill -9 any of them at random moments",
		fmt.Sprintf("%d × SIGKILL of one of 2 enrichers and 2 aggregators", kills)+r.fenceNote())
}
