// Package scaleout measures how the pipeline scales with partitions when every stage is its
// own process on loopback, as on a cluster: for N partitions it runs the collector, N
// enrichers and N aggregators (aggregator i owning the partitions p with p % N == i) beside a
// nats-server process and the local ClickHouse, sends a workload over HTTP, and reports the
// events per second from the first request until ClickHouse holds every event, the CPU time of
// each process per event, and each process's resident memory at the start and the end.
//
// A sustained run (Config.Duration) sends the same workload again and again for that long,
// each round under fresh event and response ids, paced at Config.Rate, and samples memory
// every minute: the figure that shows whether memory stays flat.
package scaleout

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/bench/chaos"
	"github.com/tokenmeter/tokenmeter/bench/e2e"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// ClickHouse names the ClickHouse server in a Result's per-process figures.
const ClickHouse = "clickhouse-server"

// Config describes one run.
type Config struct {
	// BinDir holds the binaries chaos.Build made; WorkDir receives the NATS store and logs.
	BinDir, WorkDir string
	ClickHouseDSN   string
	// Conn is connected to that ClickHouse; the run creates a fresh database and drops it.
	Conn driver.Conn
	// Partitions is the partition count, and the number of enrichers and of aggregators.
	Partitions int
	// Workload is what is sent (in full for a throughput run, round after round for a
	// sustained one). Clients is the number of requests in flight.
	Workload *e2e.Workload
	Clients  int
	// Rate paces the sending in events per second; 0 sends as fast as the collector takes.
	Rate float64
	// Duration, when not 0, makes the run sustained: rounds of the workload until it is over.
	Duration time.Duration
	// Env is extra environment of every stage process (e.g. GOGC=200).
	Env []string
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any)
}

// Sample is the resident memory of each process at one moment of a run, and the disk the
// streams and ClickHouse take.
type Sample struct {
	At  time.Duration // since the first request
	RSS map[string]int64
	// StreamBytes is the bytes each of USAGE_RAW, USAGE_ENRICHED and USAGE_HISTORY holds;
	// ClickHouseBytes the bytes on disk of the run's database.
	StreamBytes     map[string]uint64
	ClickHouseBytes uint64
	// Stored is the rows usage_events held; CPU each process's CPU time since it started.
	Stored uint64
	CPU    map[string]time.Duration
}

// SampledStreams are the streams a Sample measures.
var SampledStreams = []string{stream.Raw, stream.Enriched, stream.History}

// Result is one run's figures.
type Result struct {
	Partitions int
	Events     int           // events stored, each once
	Elapsed    time.Duration // first request until ClickHouse held every event
	// CPU is each process's CPU time during the run, by process name (chaos.Instance names,
	// and ClickHouse).
	CPU map[string]time.Duration
	// Samples holds the memory at the start (after every process was ready), every minute of
	// a sustained run, and at the end.
	Samples []Sample
	Retries int // requests answered 429/503 and sent again
}

// EventsPerSecond is the run's throughput.
func (r Result) EventsPerSecond() float64 { return float64(r.Events) / r.Elapsed.Seconds() }

// CPUPerEvent sums the CPU time of the processes whose names match stage (chaos.Instance
// names: "aggregator" matches "aggregator#2") and divides it by the events.
func (r Result) CPUPerEvent(stage string) time.Duration {
	var sum time.Duration
	for name, d := range r.CPU {
		if instanceOf(name, stage) {
			sum += d
		}
	}
	return sum / time.Duration(max(r.Events, 1))
}

// Run runs the cluster of cfg and returns its figures.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	db := "tm_scaleout_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := cfg.Conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		return res, fmt.Errorf("create database %s: %w", db, err)
	}
	defer func() {
		if dropErr := cfg.Conn.Exec(context.Background(), "DROP DATABASE "+db); dropErr != nil {
			err = errors.Join(err, fmt.Errorf("drop database %s: %w", db, dropErr))
		}
	}()
	c, err := chaos.New(chaos.Config{
		BinDir: cfg.BinDir, WorkDir: cfg.WorkDir, ClickHouseDSN: cfg.ClickHouseDSN, Database: db,
		AckWait: time.Minute, Partitions: cfg.Partitions, Enrichers: cfg.Partitions, Aggregators: cfg.Partitions,
		Env: cfg.Env,
	})
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	if err := start(ctx, c); err != nil {
		return res, err
	}
	pids := map[string]int{}
	for _, name := range c.Names() {
		pids[name] = c.Proc(name).Pid()
	}
	addr := ""
	if opts, err := clickhouse.ParseDSN(cfg.ClickHouseDSN); err == nil && len(opts.Addr) > 0 {
		addr = opts.Addr[0]
	}
	if pid, err := e2e.ServerProcess("", addr, "clickhouse-server"); err == nil {
		pids[ClickHouse] = pid
	} else {
		return res, fmt.Errorf("find the ClickHouse server's process: %w", err)
	}

	res.Partitions = cfg.Partitions
	cpu0, err := cpuTimes(pids)
	if err != nil {
		return res, err
	}
	nc, err := nats.Connect(c.NATSURL())
	if err != nil {
		return res, fmt.Errorf("connect to NATS to sample the streams: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	sample := func(at time.Duration) error {
		s := Sample{At: at, RSS: map[string]int64{}, StreamBytes: map[string]uint64{}}
		for name, pid := range pids {
			rss, err := e2e.PidRSS(pid)
			if err != nil {
				return err
			}
			s.RSS[name] = rss
		}
		if s.CPU, err = cpuTimes(pids); err != nil {
			return err
		}
		if err := cfg.Conn.QueryRow(ctx, "SELECT count() FROM "+db+".usage_events").Scan(&s.Stored); err != nil {
			return fmt.Errorf("count usage_events: %w", err)
		}
		for _, name := range SampledStreams {
			st, err := js.Stream(ctx, name)
			if err != nil {
				return fmt.Errorf("sample stream %s: %w", name, err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				return fmt.Errorf("sample stream %s: %w", name, err)
			}
			s.StreamBytes[name] = info.State.Bytes
		}
		if err := cfg.Conn.QueryRow(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = ?", db).Scan(&s.ClickHouseBytes); err != nil {
			return fmt.Errorf("sample ClickHouse's disk: %w", err)
		}
		res.Samples = append(res.Samples, s)
		return nil
	}
	if err := sample(0); err != nil {
		return res, err
	}

	begin := time.Now()
	s := &sender{url: c.CollectorURL() + "/v1/events", w: cfg.Workload, rate: cfg.Rate, begin: begin}
	sendCtx, stopSampling := context.WithCancel(ctx)
	var sampleErr error
	sampled := make(chan struct{})
	go func() { // a sample every minute, while sending
		defer close(sampled)
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-sendCtx.Done():
				return
			case <-t.C:
				if sampleErr = sample(time.Since(begin)); sampleErr != nil {
					return
				}
				logf("%s", progress(s.accepted.Load(), res.Samples[len(res.Samples)-2:]))
			}
		}
	}()
	rounds := 1
	if cfg.Duration > 0 {
		rounds = -1 // until the deadline
	}
	err = s.send(ctx, cfg.Clients, rounds, cfg.Duration)
	stopSampling()
	<-sampled
	if err = errors.Join(err, sampleErr); err != nil {
		return res, err
	}
	res.Events, res.Retries = int(s.accepted.Load()), int(s.retries.Load())
	logf("sent %d events in %s; waiting until ClickHouse holds them", res.Events, time.Since(begin).Round(time.Millisecond))
	if err := waitStored(ctx, cfg.Conn, db, res.Events); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(begin)
	cpu1, err := cpuTimes(pids)
	if err != nil {
		return res, err
	}
	res.CPU = map[string]time.Duration{}
	for name := range pids {
		res.CPU[name] = cpu1[name] - cpu0[name]
	}
	if err := sample(res.Elapsed); err != nil {
		return res, err
	}
	// Exactly once, also at scale: as many rows and distinct ids as accepted events.
	rows, distinct, err := stored(ctx, cfg.Conn, db)
	if err != nil {
		return res, err
	}
	if rows != uint64(res.Events) || distinct != uint64(res.Events) {
		return res, fmt.Errorf("usage_events holds %d rows and %d distinct ids; %d events were accepted", rows, distinct, res.Events)
	}
	return res, rollupsAgree(ctx, cfg.Conn, db)
}

// progress describes the minute between two samples: events accepted and stored, the streams'
// backlog, and the share of a core each process used.
func progress(accepted int64, s []Sample) string {
	prev, cur := s[0], s[1]
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d events accepted, %d stored (%.0f/s);", cur.At.Round(time.Second), accepted, cur.Stored,
		float64(cur.Stored-prev.Stored)/(cur.At-prev.At).Seconds())
	for _, name := range SampledStreams {
		fmt.Fprintf(&b, " %s %.0f MiB", name, float64(cur.StreamBytes[name])/(1<<20))
	}
	b.WriteString("; CPU")
	for _, name := range slices.Sorted(maps.Keys(cur.CPU)) {
		fmt.Fprintf(&b, " %s %.0f%%", name, 100*float64(cur.CPU[name]-prev.CPU[name])/float64(cur.At-prev.At))
	}
	return b.String()
}

// rollupsAgree checks that spend_1m and spend_1d count the events and the cost of
// usage_events exactly.
func rollupsAgree(ctx context.Context, conn driver.Conn, db string) error {
	var want string
	if err := conn.QueryRow(ctx, "SELECT concat(toString(count()), ' events, $', toString(sum(cost_usd))) FROM "+db+".usage_events").Scan(&want); err != nil {
		return fmt.Errorf("sum usage_events: %w", err)
	}
	for _, table := range []string{"spend_1m", "spend_1d"} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT concat(toString(sum(events)), ' events, $', toString(sum(cost_usd))) FROM "+db+"."+table).Scan(&got); err != nil {
			return fmt.Errorf("sum %s: %w", table, err)
		}
		if got != want {
			return fmt.Errorf("%s holds %s; usage_events %s", table, got, want)
		}
	}
	return nil
}

// stored counts the rows and distinct event ids of usage_events in sixteen slices of the
// ids, so that a sustained run's hundred million ids do not have to fit in one hash set.
func stored(ctx context.Context, conn driver.Conn, db string) (rows, distinct uint64, err error) {
	for k := range 16 {
		var r, d uint64
		err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+db+".usage_events WHERE cityHash64(event_id) % 16 = ?", uint8(k)).Scan(&r, &d)
		if err != nil {
			return 0, 0, fmt.Errorf("count the events of %s.usage_events: %w", db, err)
		}
		rows, distinct = rows+r, distinct+d
	}
	return rows, distinct, nil
}

// start starts NATS and the stages.
func start(ctx context.Context, c *chaos.Cluster) error {
	if _, err := c.StartProc(ctx, chaos.NATS); err != nil {
		return err
	}
	for _, name := range c.Names()[1:] {
		if _, err := c.StartProc(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func cpuTimes(pids map[string]int) (map[string]time.Duration, error) {
	cpu := map[string]time.Duration{}
	for name, pid := range pids {
		d, err := e2e.PidCPU(pid)
		if err != nil {
			return nil, err
		}
		cpu[name] = d
	}
	return cpu, nil
}

// waitStored waits until usage_events holds n rows.
func waitStored(ctx context.Context, conn driver.Conn, db string, n int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var got uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".usage_events").Scan(&got); err != nil {
			return fmt.Errorf("count usage_events: %w", err)
		}
		if got >= uint64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("usage_events holds %d of %d events after 10 minutes", got, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sender posts the workload's bodies, each until it is accepted.
type sender struct {
	url               string
	w                 *e2e.Workload
	rate              float64
	begin             time.Time
	accepted, retries atomic.Int64
}

// send posts rounds of the workload (-1: until d has passed) with clients requests in flight.
// Round r > 0 rewrites every event id and response id with the prefix "r<r>-", so that each
// round's events are new ones, and moves every event's time forward by the time since the run
// began, so that a sustained run's events are timed when they are sent, as a service's are.
func (s *sender) send(ctx context.Context, clients, rounds int, d time.Duration) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bodies := make(chan body, clients)
	go func() {
		defer close(bodies)
		sent := 0
		for r := 0; rounds < 0 || r < rounds; r++ {
			shift := time.Since(s.begin).Truncate(time.Second)
			for i, b := range s.w.Bodies {
				if rounds < 0 && time.Since(s.begin) >= d {
					return
				}
				if r > 0 {
					b = retime(renumber(b, r), shift)
				}
				if s.rate > 0 {
					due := s.begin.Add(time.Duration(float64(sent) / s.rate * float64(time.Second)))
					select {
					case <-time.After(time.Until(due)):
					case <-ctx.Done():
						return
					}
				}
				select {
				case bodies <- body{b, s.w.Sizes[i]}:
				case <-ctx.Done():
					return
				}
				sent += s.w.Sizes[i]
			}
		}
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}, Timeout: time.Minute}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for b := range bodies {
				if err := s.post(ctx, client, b); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

type body struct {
	data   []byte
	events int
}

func renumber(b []byte, round int) []byte {
	prefix := "r" + strconv.Itoa(round) + "-"
	b = bytes.ReplaceAll(b, []byte(`{"id":"`), []byte(`{"id":"`+prefix))
	return bytes.ReplaceAll(b, []byte(`"response_id":"`), []byte(`"response_id":"`+prefix))
}

// timeField is an event's time as loadgen writes it.
var timeField = regexp.MustCompile(`"time":"([^"]+)"`)

// retime moves the time of every event of b forward by d.
func retime(b []byte, d time.Duration) []byte {
	return timeField.ReplaceAllFunc(b, func(m []byte) []byte {
		t, err := time.Parse(time.RFC3339Nano, string(m[len(`"time":"`):len(m)-1]))
		if err != nil {
			return m
		}
		out := append([]byte(`"time":"`), t.Add(d).AppendFormat(nil, time.RFC3339Nano)...)
		return append(out, '"')
	})
}

// post sends b until the collector accepts all of it, waiting a second after a 429 or 503.
func (s *sender) post(ctx context.Context, client *http.Client, b body) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(b.data))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("post %d events: %w", b.events, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			want := []byte(`"accepted":` + strconv.Itoa(b.events) + `,`)
			if !bytes.Contains(msg, want) {
				return fmt.Errorf("post %d events: the collector answered %s", b.events, msg)
			}
			s.accepted.Add(int64(b.events))
			return nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			s.retries.Add(1)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		default:
			return fmt.Errorf("post %d events: %s: %s", b.events, resp.Status, bytes.TrimSpace(msg))
		}
	}
}

// Names lists the processes of a result in a stable order: NATS, the collector, enrichers,
// aggregators, ClickHouse.
func (r Result) Names() []string {
	order := []string{chaos.NATS, chaos.Collector, chaos.Enricher, chaos.Aggregator, ClickHouse}
	rank := func(name string) int {
		return slices.IndexFunc(order, func(stage string) bool { return instanceOf(name, stage) })
	}
	names := slices.Collect(maps.Keys(r.CPU))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b)) })
	return names
}

// instanceOf says whether the process name is stage or one of its further instances
// ("aggregator#2").
func instanceOf(name, stage string) bool { return name == stage || strings.HasPrefix(name, stage+"#") }
