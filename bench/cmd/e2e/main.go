// Command e2e measures the whole pipeline on this machine — the single-process tokenmeter with
// NATS embedded, and the local ClickHouse — and prints the Markdown tables of docs/benchmarks.md:
//
//	go run ./bench/cmd/e2e -events 1000000 -clients 4 -paced 0.8
//
// It runs the HTTP collector as fast as Clients concurrent requests go, then again paced at a
// share of the rate it measured (the latency at 80% of the maximum is the one that matters),
// then the Go emitter library. Each run uses a fresh pipeline process (this executable run
// again, see e2e.RunPipelineIfAsked) and a fresh database, dropped afterwards. The events are
// generated before any clock starts, in this process, so that the pipeline's peak RSS is its
// own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/tokenmeter/tokenmeter/bench/e2e"
)

func main() {
	e2e.RunPipelineIfAsked()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type config struct {
	bench      e2e.Config
	events     int
	warmup     int
	seed       uint64
	paced      float64
	rate       float64
	emit       bool
	cpuprofile string
	memprofile string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.IntVar(&c.events, "events", e2e.DefaultEvents, "lines per run: distinct valid events, 1 % copies of earlier ones, 0.5 % invalid")
	fs.IntVar(&c.warmup, "warmup", 0, "lines sent to each fresh pipeline, and stored, before the clock starts (another seed's events), to measure a pipeline that has been running")
	fs.Uint64Var(&c.seed, "seed", 1, "generator seed")
	fs.IntVar(&c.bench.BatchSize, "batch", e2e.DefaultBatchSize, "events per HTTP request")
	fs.IntVar(&c.bench.Clients, "clients", e2e.DefaultClients, "concurrent HTTP requests")
	fs.IntVar(&c.bench.MarkerEvery, "marker-every", e2e.DefaultMarkerEvery, "track the first event of every n-th body until it is queryable")
	fs.IntVar(&c.bench.Partitions, "partitions", e2e.DefaultPartitions, "pipeline partitions")
	fs.Float64Var(&c.paced, "paced", 0.8, "also run HTTP paced at this share of the measured maximum rate (0 = no paced run)")
	fs.Float64Var(&c.rate, "rate", 0, "events/s of the paced run; overrides -paced")
	fs.BoolVar(&c.emit, "emit", true, "also run the Go emitter library")
	fs.StringVar(&c.bench.ClickHouseDSN, "dsn", e2e.DSN(), "ClickHouse DSN (default from TOKENMETER_CLICKHOUSE_DSN)")
	fs.StringVar(&c.bench.ClickHousePIDFile, "clickhouse-pid-file", "", "pid file of the ClickHouse server (default: find clickhouse-server by its command line)")
	fs.IntVar(&c.bench.InsertRows, "insert-rows", 0, "the aggregator's rows per INSERT (default: its own)")
	fs.DurationVar(&c.bench.InsertWait, "insert-wait", 0, "the aggregator's longest wait to fill an INSERT (default: its own)")
	fs.DurationVar(&c.bench.Timeout, "timeout", e2e.DefaultTimeout, "give up on a run after this long")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write the runs' CPU profiles, merged, to this file (stage = pprof label)")
	fs.StringVar(&c.memprofile, "memprofile", "", "write this process's heap profile (the load generator's allocations since start: -sample_index=alloc_space) after the runs to this file")
	fs.StringVar(&c.bench.HeapProfile, "heapprofile", "", "write the pipeline process's in-use heap profile at its largest Go heap to this file + \".\" + the run's name")
	fs.BoolVar(&c.bench.Verbose, "v", false, "log the pipeline's warnings and errors")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if c.events < 1 {
		errs = append(errs, fmt.Errorf("events (%d) must be positive", c.events))
	}
	if c.warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup (%d) must not be negative", c.warmup))
	}
	if c.paced < 0 || c.paced > 1 {
		errs = append(errs, fmt.Errorf("paced (%v) must be within [0, 1]", c.paced))
	}
	if c.rate < 0 {
		errs = append(errs, fmt.Errorf("rate (%v) must not be negative", c.rate))
	}
	if err := c.bench.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "e2e: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.bench.Verbose {
		cfg.bench.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	results, err := measure(ctx, cfg, stderr)
	if len(results) > 0 {
		fmt.Fprintf(stdout, "%d lines per HTTP run (1 %% copies, 0.5 %% invalid; the events column counts the distinct valid events stored), %d-line NDJSON bodies, %d clients, %d partitions, GOMAXPROCS %d, %s\n\n",
			cfg.events, cfg.bench.BatchSize, cfg.bench.Clients, cfg.bench.Partitions, runtime.GOMAXPROCS(0), time.Now().Format(time.DateOnly))
		if werr := e2e.WriteTable(stdout, results); werr != nil {
			fmt.Fprintf(stderr, "e2e: write the table: %v\n", werr)
			return 1
		}
		fmt.Fprintln(stdout)
		if werr := e2e.WriteStageTable(stdout, results); werr != nil {
			fmt.Fprintf(stderr, "e2e: write the stage table: %v\n", werr)
			return 1
		}
		if cfg.memprofile != "" {
			if werr := writeHeapProfile(cfg.memprofile); werr != nil {
				fmt.Fprintf(stderr, "e2e: %v\n", werr)
				return 1
			}
		}
		if cfg.cpuprofile != "" {
			if werr := writeProfile(cfg.cpuprofile, results); werr != nil {
				fmt.Fprintf(stderr, "e2e: %v\n", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "e2e: %v\n", err)
		return 1
	}
	return 0
}

// measure runs the configured measurements and returns the results of those that finished.
func measure(ctx context.Context, cfg config, stderr io.Writer) ([]e2e.Result, error) {
	b, err := e2e.New(cfg.bench)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if b.ClickHousePID() == 0 {
		fmt.Fprintln(stderr, "e2e: ClickHouse server process not found; its CPU time is not reported")
	}

	gen := e2e.TrafficConfig(time.Now(), cfg.seed)
	t0 := time.Now()
	w, err := e2e.Generate(gen, cfg.events, cfg.bench.BatchSize)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "e2e: generated %d lines in %d bodies (%d MiB) in %s: %d distinct valid events, %d copies, %d invalid\n",
		w.Lines, len(w.Bodies), w.Bytes>>20, time.Since(t0).Round(time.Millisecond), w.Events, w.Copies, w.Invalid)

	if cfg.warmup > 0 {
		// Another seed: other ids and response ids, the same mix.
		warm, err := e2e.Generate(e2e.TrafficConfig(time.Now(), cfg.seed+1_000_000), cfg.warmup, cfg.bench.BatchSize)
		if err != nil {
			return nil, err
		}
		b.SetWarmup(warm)
		fmt.Fprintf(stderr, "e2e: every run stores %d warm-up events first\n", warm.Events)
	}

	var results []e2e.Result
	step := func(r e2e.Result, err error) error {
		if err != nil {
			return fmt.Errorf("%s run: %w", r.Name, err)
		}
		fmt.Fprintf(stderr, "e2e: %s: %d events in %s\n", r.Name, r.Events, r.Elapsed.Round(time.Millisecond))
		results = append(results, r)
		return nil
	}
	if err := step(b.HTTP(ctx, w, 0)); err != nil {
		return results, err
	}
	rate := cfg.rate
	if rate == 0 {
		rate = cfg.paced * results[0].EventsPerSecond()
	}
	if rate > 0 {
		if err := step(b.HTTP(ctx, w, rate)); err != nil {
			return results, err
		}
	}
	if cfg.emit {
		// The emitter gets the same mix as values, without copies and invalid events; the
		// bodies are garbage by now.
		events, err := e2e.GenerateEvents(gen, cfg.events)
		if err != nil {
			return results, err
		}
		if err := step(b.Emit(ctx, events)); err != nil {
			return results, err
		}
	}
	return results, nil
}

// writeProfile writes the runs' CPU profiles, merged, to path.
func writeProfile(path string, results []e2e.Result) error {
	data, err := e2e.MergeProfiles(results)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write the CPU profile: %w", err)
	}
	return nil
}

// writeHeapProfile writes the heap profile, whose alloc_space samples count every allocation
// since the process started, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create the heap profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("write the heap profile: %w", err)
	}
	return f.Close()
}
