package e2e

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestMain lets this test binary be the pipeline process of the runs it starts.
func TestMain(m *testing.M) {
	RunPipelineIfAsked()
	os.Exit(m.Run())
}

func newBench(t testing.TB, cfg Config) *Bench {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("ClickHouse is required (make test starts one): %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// databaseExists tells whether a run left its database behind.
func databaseExists(t testing.TB, b *Bench, db string) bool {
	t.Helper()
	var n uint64
	if err := b.conn.QueryRow(context.Background(), "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestRuns sends a small workload through each path and checks what the results count; the
// figures themselves depend on the machine.
func TestRuns(t *testing.T) {
	const events, batch, markerEvery = 3000, 300, 2
	b := newBench(t, Config{BatchSize: batch, MarkerEvery: markerEvery, Timeout: time.Minute})
	gen := TrafficConfig(time.Now(), 7)
	w, err := Generate(gen, events, batch)
	if err != nil {
		t.Fatal(err)
	}
	// Seed 7's 3,000 lines: loadgen's shares of copies (1 %) and invalid events (0.5 %).
	if len(w.Bodies) != 10 || w.Lines != events || w.Events != 2952 || w.Copies != 32 || w.Invalid != 16 {
		t.Fatalf("workload: %d bodies, %d lines: %d events, %d copies, %d invalid; want 10, %d: 2952, 32, 16",
			len(w.Bodies), w.Lines, w.Events, w.Copies, w.Invalid, events)
	}
	accepted, rejected := 0, 0
	for i := range w.Bodies {
		accepted += w.Accepted[i]
		rejected += w.Rejected[i]
	}
	if accepted != w.Events+w.Copies || rejected != w.Invalid {
		t.Fatalf("bodies accept %d lines and reject %d, want %d and %d", accepted, rejected, w.Events+w.Copies, w.Invalid)
	}
	ctx := context.Background()
	check := func(r Result, err error, stored, requests, markers int) Result {
		t.Helper()
		if err != nil {
			t.Fatalf("%s run: %v", r.Name, err)
		}
		if r.Events != stored || r.HTTP.N != requests || r.Queryable.N != markers {
			t.Errorf("%s: %d events, %d requests, %d markers; want %d, %d, %d",
				r.Name, r.Events, r.HTTP.N, r.Queryable.N, stored, requests, markers)
		}
		if r.Elapsed <= 0 || r.Intake <= 0 || r.CPU <= 0 || r.PeakRSS <= 0 || r.LoadPeakRSS <= 0 {
			t.Errorf("%s: elapsed %s, intake %s, CPU %s, peak RSS %d (load generator %d); want all positive",
				r.Name, r.Elapsed, r.Intake, r.CPU, r.PeakRSS, r.LoadPeakRSS)
		}
		// The stages come from the pipeline process's CPU profile and from this process's.
		if r.Profile == nil || r.LoadProfile == nil {
			t.Errorf("%s: pipeline profile %d bytes, load generator profile %d bytes; want both",
				r.Name, len(r.Profile), len(r.LoadProfile))
		}
		if b.ClickHousePID() != 0 && !r.ClickHouseKnown {
			t.Errorf("%s: ClickHouse CPU unknown although its process is %d", r.Name, b.ClickHousePID())
		}
		if databaseExists(t, b, r.Database) {
			t.Errorf("%s: database %s was not dropped", r.Name, r.Database)
		}
		return r
	}
	r, err := b.HTTP(ctx, w, 0)
	check(r, err, w.Events, 10, 0) // latency is measured in paced runs only
	// Paced at 20,000 events/s the last body leaves 2,700 events after the first: 135ms.
	r, err = b.HTTP(ctx, w, 20_000)
	if r := check(r, err, w.Events, 10, 5); r.Intake < 135*time.Millisecond {
		t.Errorf("paced run took in every event in %s, before the last body was due at 135ms", r.Intake)
	}
	ev, err := GenerateEvents(gen, events)
	if err != nil {
		t.Fatal(err)
	}
	if ev[300].ID != "evt_7_300" {
		t.Errorf("GenerateEvents: event 300 is %s, want evt_7_300 (no copies, no invalid events)", ev[300].ID)
	}
	r, err = b.Emit(ctx, ev)
	check(r, err, events, 0, 0)
}

// TestWarmup stores a warm-up workload before the measured one: the run counts only the
// measured events, waits for both to be stored, and would fail on a count past their sum.
func TestWarmup(t *testing.T) {
	const events, batch = 1000, 250
	b := newBench(t, Config{BatchSize: batch, Timeout: time.Minute})
	warm, err := Generate(TrafficConfig(time.Now(), 8), 600, batch)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Generate(TrafficConfig(time.Now(), 9), events, batch)
	if err != nil {
		t.Fatal(err)
	}
	b.SetWarmup(warm)
	r, err := b.HTTP(context.Background(), w, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Warmup != warm.Events || r.Events != w.Events || r.HTTP.N != 4 {
		t.Errorf("warm-up %d events, run %d events in %d requests; want %d, %d in 4", r.Warmup, r.Events, r.HTTP.N, warm.Events, w.Events)
	}
	if got := runName(r); got != "HTTP, after "+thousands(int64(warm.Events)) {
		t.Errorf("run name %q", got)
	}
}

// BenchmarkEndToEnd runs the HTTP measurement of cmd/e2e with 100,000 events once per
// iteration, each on a fresh pipeline and database:
//
//	go test -run '^$' -bench EndToEnd -benchtime 1x ./bench/e2e
func BenchmarkEndToEnd(b *testing.B) {
	const events = 100_000
	bench := newBench(b, Config{})
	w, err := Generate(TrafficConfig(time.Now(), 1), events, DefaultBatchSize)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var perSec, p99, intake, cpu float64
	for range b.N {
		r, err := bench.HTTP(context.Background(), w, 0)
		if err != nil {
			b.Fatal(err)
		}
		perSec += r.EventsPerSecond()
		p99 += float64(r.Queryable.P99) / float64(time.Millisecond)
		intake += r.IntakePerSecond()
		cpu += float64(r.CPUPerEvent()) / float64(time.Microsecond)
	}
	n := float64(b.N)
	b.ReportMetric(perSec/n, "events/s")
	b.ReportMetric(p99/n, "p99-ms")
	b.ReportMetric(intake/n, "intake-events/s")
	b.ReportMetric(cpu/n, "cpu-µs/event")
}
