package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/collector/emit"
	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Result is what one run measured.
type Result struct {
	// Name says which path the events took ("HTTP", "HTTP paced", "emitter").
	Name   string
	Events int
	// Warmup is the number of events the pipeline stored before the clock started
	// (Config.Warmup).
	Warmup int
	// Database is the run's database, dropped when the run ended.
	Database string
	// Rate is the target events/s of a paced run; 0 is as fast as possible.
	Rate float64
	// Elapsed runs from the first request until ClickHouse held every event; Intake until the
	// last 202 arrived (for the emitter: until Close returned, every event acknowledged by
	// JetStream).
	Elapsed, Intake time.Duration
	// Queryable is the latency from a marker body's 202 until its first event was seen in
	// ClickHouse (an upper bound: the time the lookup that found it returned).
	Queryable Latencies
	// HTTP is the latency of the requests answered with 202; Retries counts 429 and 503
	// answers, each followed by the same body again after Retry-After.
	HTTP    Latencies
	Retries int
	// CPU is the pipeline process's CPU time during Elapsed (every stage and the embedded
	// NATS); LoadCPU this process's (the load generator and the benchmark's ClickHouse
	// polling); ClickHouseCPU the server's, when ClickHouseKnown.
	CPU, LoadCPU, ClickHouseCPU time.Duration
	ClickHouseKnown             bool
	// Faults, LoadFaults and ClickHouseFaults are the minor page faults of the same processes
	// during Elapsed (ClickHouse's when ClickHouseKnown). A fresh pipeline process serves
	// every run, so most of its faults are its first touch of the memory it grows to.
	Faults, LoadFaults, ClickHouseFaults uint64
	// PeakRSS is the pipeline process's peak resident set size (VmHWM) in bytes, from its
	// start until the run's last event was stored: a fresh process serves every run.
	// LoadPeakRSS is this process's during the run (it holds the pre-generated workload),
	// ClickHousePeakRSS the server's (0 when unknown). Their ...OfRun flag is false when
	// the peak could not be reset at the run's start, and is then the process's own.
	PeakRSS, LoadPeakRSS, ClickHousePeakRSS  int64
	LoadPeakRSSOfRun, ClickHousePeakRSSOfRun bool
	// Stages splits CPU by the stage a goroutine worked for (the CPU profiles' labels),
	// largest first: the pipeline process's stages, then this process's. Profile is the
	// pipeline process's CPU profile, LoadProfile this process's. All are nil when another
	// CPU profile was running.
	Stages               []StageCPU
	Profile, LoadProfile []byte
}

// EventsPerSecond is the end-to-end throughput: events over Elapsed.
func (r Result) EventsPerSecond() float64 { return perSecond(r.Events, r.Elapsed) }

// IntakePerSecond is the intake throughput: events over Intake.
func (r Result) IntakePerSecond() float64 { return perSecond(r.Events, r.Intake) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// CPUPerEvent is the pipeline process's CPU time per event.
func (r Result) CPUPerEvent() time.Duration { return perEvent(r.CPU, r.Events) }

// ClickHouseCPUPerEvent is the ClickHouse server's CPU time per event.
func (r Result) ClickHouseCPUPerEvent() time.Duration { return perEvent(r.ClickHouseCPU, r.Events) }

func perEvent(d time.Duration, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return d / time.Duration(n)
}

// HTTP posts the workload's bodies to a fresh pipeline with Config.Clients concurrent
// requests and measures until ClickHouse holds every event. With rate > 0 the bodies are
// released at rate events/s (a client that is still busy delays the next body); with 0 they
// go as fast as the clients can send them.
func (b *Bench) HTTP(ctx context.Context, w *Workload, rate float64) (Result, error) {
	name := "HTTP"
	if rate > 0 {
		name = "HTTP paced"
	}
	res := Result{Name: name, Events: w.Events, Rate: rate}
	err := b.run(ctx, &res, func(ctx context.Context, pl *pipeline, start time.Time) error {
		return b.send(ctx, pl, w, rate, start, &res)
	})
	return res, err
}

// Emit sends events through the Go emitter library (collector/emit) straight to JetStream of a
// fresh pipeline and measures until ClickHouse holds every one. The events must be valid and
// distinct (GenerateEvents).
func (b *Bench) Emit(ctx context.Context, events []event.Usage) (Result, error) {
	res := Result{Name: "emitter", Events: len(events)}
	err := b.run(ctx, &res, func(ctx context.Context, pl *pipeline, start time.Time) error {
		nc, err := emit.Connect(pl.c.ready.NATS, pl.seed)
		if err != nil {
			return fmt.Errorf("connect the emitter to %s: %w", pl.c.ready.NATS, err)
		}
		defer nc.Close()
		em, err := emit.New(nc, emit.Options{Partitions: b.cfg.Partitions})
		if err != nil {
			return err
		}
		for i := range events {
			// A full buffer is back-pressure: wait for JetStream, as a service that must not
			// lose an event would.
			for {
				err = em.Emit(events[i])
				if !errors.Is(err, emit.ErrBufferFull) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if err != nil {
				_ = em.Close(ctx)
				return fmt.Errorf("emit event %s: %w", events[i].ID, err)
			}
		}
		if err := em.Close(ctx); err != nil {
			return fmt.Errorf("close the emitter: %w", err)
		}
		res.Intake = time.Since(start)
		if s := em.Stats(); s.Published != uint64(len(events)) || s.Invalid != 0 {
			return fmt.Errorf("emitter published %d of %d events (%d invalid)", s.Published, len(events), s.Invalid)
		}
		return nil
	})
	return res, err
}

// run starts a fresh pipeline process on a fresh database, starts the clock, runs load, and
// stops the clock when the database holds res.Events rows; then it stops the pipeline and
// drops the database. load returning an error ends the run.
func (b *Bench) run(ctx context.Context, res *Result, load func(context.Context, *pipeline, time.Time) error) (err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, b.cfg.Timeout,
		fmt.Errorf("%s run of %d events did not finish within %s", res.Name, res.Events, b.cfg.Timeout))
	defer cancel()
	pl, err := b.startPipeline(ctx, res.Name)
	if err != nil {
		return err
	}
	res.Database = pl.db
	defer func() { err = errors.Join(err, pl.stop(b)) }()
	if w := b.cfg.Warmup; w != nil {
		warm := Result{Name: res.Name + " warm-up", Events: w.Events}
		if err := b.send(ctx, pl, w, 0, time.Now(), &warm); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if _, err := b.waitCount(ctx, pl.db, w.Events); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		res.Warmup = w.Events
	}

	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	res.LoadPeakRSSOfRun = resetPeakRSS("self")
	if b.chPID != 0 {
		res.ClickHousePeakRSSOfRun = resetPeakRSS(strconv.Itoa(b.chPID))
	}
	prof := startCPUProfile()
	childProf := pl.startCPUProfile()
	before := b.usage(pl)
	start := time.Now()
	var loadErr error
	loaded := make(chan struct{})
	go withStage(ctx, StageLoad, func(ctx context.Context) {
		defer close(loaded)
		if loadErr = load(ctx, pl, start); loadErr != nil {
			abort(loadErr)
		}
	})
	var end time.Time
	withStage(ctx, StageBench, func(ctx context.Context) { end, err = b.waitCount(ctx, pl.db, res.Warmup+res.Events) })
	after := b.usage(pl)
	if err != nil {
		// Where the events that never arrived are waiting.
		states, cerr := pl.c.do("consumers")
		if cerr == nil {
			cerr = errors.New(states)
		}
		err = errors.Join(err, cerr)
	}
	res.LoadProfile = prof.stop()
	var perr error
	res.Profile, perr = pl.stopCPUProfile(childProf)
	if err != nil {
		abort(err)
	}
	<-loaded
	if loadErr != nil {
		return loadErr
	}
	if err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	if res.Profile != nil && res.LoadProfile != nil {
		if res.Stages, err = stageCPU(res.Profile, StageOther); err != nil {
			return err
		}
		load, err := stageCPU(res.LoadProfile, StageLoadRuntime)
		if err != nil {
			return err
		}
		res.Stages = append(res.Stages, load...)
		sortStages(res.Stages)
	}
	res.Elapsed = end.Sub(start)
	res.CPU, res.Faults = after.pipeline.CPU-before.pipeline.CPU, after.pipeline.Faults-before.pipeline.Faults
	res.LoadCPU, res.LoadFaults = after.load.CPU-before.load.CPU, after.load.Faults-before.load.Faults
	res.ClickHouseCPU, res.ClickHouseKnown = after.ch.CPU-before.ch.CPU, before.chOK && after.chOK
	res.ClickHouseFaults = after.ch.Faults - before.ch.Faults
	if res.PeakRSS, err = PidPeakRSS(strconv.Itoa(pl.c.Pid())); err != nil {
		return err
	}
	if res.LoadPeakRSS, err = PidPeakRSS("self"); err != nil {
		return err
	}
	if b.chPID != 0 {
		res.ClickHousePeakRSS, _ = PidPeakRSS(strconv.Itoa(b.chPID))
	}
	return nil
}

// waitCount polls the number of stored events until it reaches n and returns when it did. It
// reads the row counts of the table's active parts, not count(), which would scan the table;
// even so a query costs ClickHouse 1–2 ms of CPU, which a poll every CountPoll
// throughout a run added to ClickHouse's figure. So it waits between polls for an eighth of
// the time the rate so far says is left (countWait), between CountPoll and maxCountWait: the
// end it reports is late by at most that wait.
func (b *Bench) waitCount(ctx context.Context, db string, n int) (time.Time, error) {
	q := "SELECT sum(rows) FROM system.parts WHERE database = '" + db + "' AND table = 'usage_events' AND active"
	start := time.Now()
	var first uint64 // the count at start: a warm-up's events
	for polls := 0; ; polls++ {
		var got uint64
		if err := b.conn.QueryRow(ctx, q).Scan(&got); err != nil {
			if ctx.Err() != nil {
				return time.Time{}, context.Cause(ctx)
			}
			return time.Time{}, fmt.Errorf("count the stored events: %w", err)
		}
		at := time.Now()
		if got >= uint64(n) {
			if got > uint64(n) {
				return at, fmt.Errorf("%s.usage_events holds %d rows, more than the %d distinct events sent", db, got, n)
			}
			return at, nil
		}
		if polls == 0 {
			first = got
		}
		t := time.NewTimer(countWait(got-first, uint64(n)-got, at.Sub(start), b.cfg.CountPoll))
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, fmt.Errorf("%w (%d of %d events stored)", context.Cause(ctx), got, n)
		case <-t.C:
		}
	}
}

// maxCountWait bounds waitCount's wait between polls, and so how late it may see the end.
const maxCountWait = 250 * time.Millisecond

// countWait is how long waitCount waits for the next poll, having seen done events stored in
// elapsed and left still to come: an eighth of the time left at the rate so far, within
// [poll, maxCountWait].
func countWait(done, left uint64, elapsed, poll time.Duration) time.Duration {
	if done == 0 {
		return max(poll, maxCountWait)
	}
	eta := time.Duration(float64(elapsed) * float64(left) / float64(done))
	return min(max(eta/8, poll), max(poll, maxCountWait))
}

type usage struct {
	pipeline, load, ch procUsage
	chOK               bool
}

// usage reads what the pipeline process, this one (the load generator) and the ClickHouse
// server have used so far.
func (b *Bench) usage(pl *pipeline) usage {
	var u usage
	u.pipeline, _ = PidUsage(pl.c.Pid())
	u.load, _ = processUsage()
	if b.chPID != 0 {
		var err error
		u.ch, err = PidUsage(b.chPID)
		u.chOK = err == nil
	}
	return u
}

// pipeline is a started pipeline process on its own database and data directory.
type pipeline struct {
	c    *child
	db   string
	dir  string
	seed string // the NATS seed of the emitter "bench"
}

// startPipeline starts a pipeline process on a fresh database and waits until its stages are
// consuming, so that start-up (migrations, streams, consumers) is not measured.
func (b *Bench) startPipeline(ctx context.Context, run string) (*pipeline, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	pl := &pipeline{db: "tm_bench_" + hex.EncodeToString(rnd[:])}
	var err error
	if pl.dir, err = os.MkdirTemp("", "tm-bench-"); err != nil {
		return nil, fmt.Errorf("create the pipeline's data directory: %w", err)
	}
	creds := filepath.Join(pl.dir, "creds")
	if pl.seed, err = natsauth.AddEmitter(creds, "bench"); err != nil {
		_ = os.RemoveAll(pl.dir)
		return nil, err
	}
	pl.c, err = startChild(ctx, childConfig{
		DataDir: pl.dir, CredsDir: creds, ClickHouseDSN: b.cfg.ClickHouseDSN, Database: pl.db,
		Partitions: b.cfg.Partitions, InsertRows: b.cfg.InsertRows, InsertWait: b.cfg.InsertWait,
		Verbose: b.cfg.Verbose, HeapProfile: b.heapProfile(run),
	})
	if err != nil {
		_ = os.RemoveAll(pl.dir)
		return nil, err
	}
	return pl, nil
}

// heapProfile is the file of run's peak heap profile, "" for none.
func (b *Bench) heapProfile(run string) string {
	if b.cfg.HeapProfile == "" {
		return ""
	}
	return b.cfg.HeapProfile + "." + strings.ReplaceAll(run, " ", "-")
}

// startCPUProfile starts the pipeline process's CPU profile; it reports whether it runs.
func (pl *pipeline) startCPUProfile() bool {
	_, err := pl.c.do("cpu start")
	return err == nil
}

// stopCPUProfile stops the pipeline process's CPU profile and returns it, or nil when it did
// not run.
func (pl *pipeline) stopCPUProfile(running bool) ([]byte, error) {
	if !running {
		return nil, nil
	}
	file := filepath.Join(pl.dir, "cpu.pprof")
	if _, err := pl.c.do("cpu stop " + file); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the pipeline's CPU profile: %w", err)
	}
	return data, nil
}

// stop stops the pipeline process and removes its database and data directory.
func (pl *pipeline) stop(b *Bench) error {
	err := pl.c.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if derr := b.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pl.db); derr != nil {
		err = errors.Join(err, fmt.Errorf("drop database %s: %w", pl.db, derr))
	}
	return errors.Join(err, os.RemoveAll(pl.dir))
}

// send posts the bodies with the configured number of clients and tracks the markers; it
// returns once every body was accepted and every marker seen.
func (b *Bench) send(ctx context.Context, pl *pipeline, w *Workload, rate float64, start time.Time, res *Result) error {
	url := "http://" + pl.c.ready.Collector + "/v1/events"
	transport := &http.Transport{MaxIdleConnsPerHost: b.cfg.Clients, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: time.Minute}

	// Latency is measured in paced runs only: at full speed the queues grow by design, and
	// looking markers up every few milliseconds would tax ClickHouse's CPU figure.
	every := b.cfg.MarkerEvery
	mk := newMarkers(0)
	if rate > 0 {
		mk = newMarkers((len(w.Bodies) + every - 1) / every)
	}
	polled := make(chan error, 1)
	go withStage(ctx, StageBench, func(ctx context.Context) { polled <- mk.poll(ctx, b, pl.db, b.cfg.Partitions) })

	jobs := make(chan int)
	go func() {
		defer close(jobs)
		sent := 0
		for i := range w.Bodies {
			if rate > 0 {
				due := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case jobs <- i:
			}
			sent += w.Sizes[i]
		}
	}()

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, len(w.Bodies))
		lastOK    time.Time
		firstErr  error
	)
	var wg sync.WaitGroup
	for range b.cfg.Clients {
		wg.Go(func() {
			for i := range jobs {
				lat, at, retries, err := post(ctx, client, url, w.Bodies[i], w.Accepted[i], w.Rejected[i])
				mu.Lock()
				res.Retries += retries
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("post body %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				latencies = append(latencies, lat)
				if at.After(lastOK) {
					lastOK = at
				}
				mu.Unlock()
				if rate > 0 && i%every == 0 {
					mk.accept(w.Markers[i], at)
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	res.Intake = lastOK.Sub(start)
	res.HTTP = summarise(latencies)
	if err := <-polled; err != nil {
		return err
	}
	res.Queryable = summarise(mk.latencies)
	return nil
}

// post sends one body until it is accepted, waiting Retry-After after a 429 or 503. It returns
// the latency of the accepted request and when its answer arrived.
func post(ctx context.Context, client *http.Client, url string, body []byte, accepted, rejected int) (time.Duration, time.Time, int, error) {
	for retries := 0; ; retries++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, time.Time{}, retries, err
		}
		req.Header.Set("Content-Type", event.ContentNDJSON)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, time.Time{}, retries, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		at := time.Now()
		if err != nil {
			return 0, time.Time{}, retries, fmt.Errorf("read the answer: %w", err)
		}
		switch resp.StatusCode {
		case http.StatusAccepted:
			var answer struct {
				Accepted int               `json:"accepted"`
				Rejected []json.RawMessage `json:"rejected"`
			}
			if err := json.Unmarshal(data, &answer); err != nil {
				return 0, time.Time{}, retries, fmt.Errorf("decode the answer %q: %w", data, err)
			}
			if answer.Accepted != accepted || len(answer.Rejected) != rejected {
				return 0, time.Time{}, retries, fmt.Errorf("%d events accepted and %d rejected, want %d and %d: %s",
					answer.Accepted, len(answer.Rejected), accepted, rejected, data)
			}
			return at.Sub(t0), at, retries, nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			select {
			case <-ctx.Done():
				return 0, time.Time{}, retries, context.Cause(ctx)
			case <-time.After(retryAfter(resp.Header.Get("Retry-After"))):
			}
		default:
			return 0, time.Time{}, retries, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
		}
	}
}

// retryAfter reads a Retry-After header in seconds; a missing or unreadable one means 1s.
func retryAfter(h string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || s < 0 {
		return time.Second
	}
	return time.Duration(s) * time.Second
}

// markers tracks the marker events: accepted, not yet seen in ClickHouse.
type markers struct {
	mu          sync.Mutex
	outstanding map[string]accepted // event id → its marker and when its body's 202 arrived
	left        int                 // markers not yet seen
	latencies   []time.Duration
}

type accepted struct {
	Marker
	at time.Time
}

func newMarkers(n int) *markers {
	return &markers{outstanding: make(map[string]accepted), left: n, latencies: make([]time.Duration, 0, n)}
}

func (m *markers) accept(mk Marker, at time.Time) {
	m.mu.Lock()
	m.outstanding[mk.ID] = accepted{mk, at}
	m.mu.Unlock()
}

// poll looks the outstanding markers up every MarkerPoll, all in one query, until every
// marker was seen or ctx is done. It asks usage_responses, sorted by (partition,
// response_id), where each marker is one index granule: asked by event id, usage_events read
// every stored id at each poll, 5.2 s of ClickHouse's CPU in a paced run (query_log), nearly
// as much as its INSERTs. One IN list per partition: ClickHouse prunes it as well as an OR
// per marker and evaluates it for half the CPU. usage_responses_mv fills the table from the
// INSERT into usage_events once that table's block is written, so a marker found there is
// queryable in usage_events.
func (m *markers) poll(ctx context.Context, b *Bench, db string, partitions int) error {
	tick := time.NewTicker(b.cfg.MarkerPoll)
	defer tick.Stop()
	var q strings.Builder
	byPartition := map[int][]string{}
	for {
		m.mu.Lock()
		left := m.left
		q.Reset()
		clear(byPartition)
		n := 0
		for _, a := range m.outstanding {
			p := stream.PartitionOf(a.Provider, a.ResponseID, a.ID, partitions)
			byPartition[p] = append(byPartition[p], a.ResponseID)
			n++
		}
		m.mu.Unlock()
		q.WriteString("SELECT event_id FROM " + db + ".usage_responses WHERE ")
		or := ""
		for p, ids := range byPartition {
			fmt.Fprintf(&q, "%s(partition = %d AND response_id IN (", or, p)
			for i, id := range ids {
				if i > 0 {
					q.WriteByte(',')
				}
				q.WriteString(quote(id))
			}
			q.WriteString("))")
			or = " OR "
		}
		if left == 0 {
			return nil
		}
		if n > 0 {
			seen, err := lookup(ctx, b, q.String())
			var exc *clickhouse.Exception
			if errors.As(err, &exc) && exc.Code == unknownTable {
				// The pipeline's aggregator applies the migrations as it starts, which may be
				// after the collector accepted the first bodies (seen once in CI).
				seen, err = nil, nil
			}
			if err != nil {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return fmt.Errorf("look up %d marker events: %w", n, err)
			}
			at := time.Now()
			m.mu.Lock()
			for _, id := range seen {
				if acc, ok := m.outstanding[id]; ok {
					m.latencies = append(m.latencies, at.Sub(acc.at))
					delete(m.outstanding, id)
					m.left--
				}
			}
			m.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
		}
	}
}

// unknownTable is ClickHouse's error code for a table that does not exist (yet).
const unknownTable = 60

func lookup(ctx context.Context, b *Bench, q string) ([]string, error) {
	rows, err := b.conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// quote makes a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
