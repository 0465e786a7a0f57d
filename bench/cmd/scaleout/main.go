// Command scaleout measures how throughput scales with partitions when every stage runs as its
// own process on loopback: for each partition count N it runs the collector, N enrichers and N
// aggregators with a nats-server process and the local ClickHouse, and prints docs/benchmarks.md's
// table (events/s and CPU µs per event of each kind of process):
//
//	go run ./bench/cmd/scaleout -partitions 1,2,4 -events 500000
//
// With -duration it runs one sustained, paced run instead and prints every process's memory,
// sampled each minute:
//
//	go run ./bench/cmd/scaleout -partitions 4 -duration 30m -rate 20000 -stream-max-age 10m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/bench/chaos"
	"github.com/tokenmeter/tokenmeter/bench/e2e"
	"github.com/tokenmeter/tokenmeter/bench/scaleout"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scaleout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		partitions = fs.String("partitions", "1,2,4", "partition counts to measure, each with as many enrichers and aggregators")
		events     = fs.Int("events", 500_000, "distinct events in the workload")
		clients    = fs.Int("clients", 4, "concurrent HTTP requests")
		rate       = fs.Float64("rate", 0, "events/s to send at (0: as fast as the collector takes them)")
		duration   = fs.Duration("duration", 0, "run one sustained run this long, the workload sent round after round under new ids")
		dsn        = fs.String("dsn", e2e.DSN(), "ClickHouse DSN")
		envs       = fs.String("env", "", "extra environment of every stage process, comma-separated KEY=value (e.g. GOGC=200)")
		seed       = fs.Uint64("seed", 1, "generator seed")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var counts []int
	for f := range strings.SplitSeq(*partitions, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			fmt.Fprintf(stderr, "scaleout: -partitions %q: %q is not a count from 1 to 64\n", *partitions, f)
			return 2
		}
		counts = append(counts, n)
	}
	if *duration > 0 && len(counts) != 1 {
		fmt.Fprintln(stderr, "scaleout: a sustained run (-duration) takes one partition count")
		return 2
	}
	var env []string
	if *envs != "" {
		env = strings.Split(*envs, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := measure(ctx, stdout, stderr, counts, *events, *clients, *rate, *duration, *dsn, env, *seed); err != nil {
		fmt.Fprintln(stderr, "scaleout:", err)
		return 1
	}
	return 0
}

func measure(ctx context.Context, stdout, stderr io.Writer, counts []int, events, clients int, rate float64, duration time.Duration,
	dsn string, env []string, seed uint64) (err error) {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("ClickHouse DSN %q: %w", dsn, err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	bin, err := os.MkdirTemp("", "tokenmeter-scaleout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	logf("building the binaries")
	if err := chaos.Build(ctx, bin); err != nil {
		return err
	}
	logf("generating %d events", events)
	gen := e2e.GeneratorConfig(time.Now().UTC(), seed)
	if duration > 0 && rate > 0 {
		// A sustained run is a service's traffic: each round's events timed over the time it
		// takes to send them (and moved forward round by round), with loadgen's share of late
		// ones — not a day of event time sent in half a minute, which makes nearly every event
		// hours late and a lookup in ClickHouse once the de-duplication sets are bounded.
		gen.Span = time.Duration(float64(events) / rate * float64(time.Second))
	}
	w, err := e2e.Generate(gen, events, e2e.DefaultBatchSize)
	if err != nil {
		return err
	}
	var results []scaleout.Result
	for _, n := range counts {
		work, err := os.MkdirTemp("", "tokenmeter-scaleout-work-")
		if err != nil {
			return err
		}
		logf("%d partitions: %d enrichers, %d aggregators", n, n, n)
		r, err := scaleout.Run(ctx, scaleout.Config{
			BinDir: bin, WorkDir: work, ClickHouseDSN: dsn, Conn: conn, Partitions: n, Workload: w, Clients: clients,
			Rate: rate, Duration: duration, Env: env, Logf: logf,
		})
		if err != nil {
			if duration > 0 && len(r.Samples) > 0 { // what a failed sustained run saw is its finding
				scaleout.WriteMemoryTable(stdout, r)
			}
			return errors.Join(fmt.Errorf("%d partitions: %w (logs in %s)", n, err, work))
		}
		os.RemoveAll(work)
		logf("%d partitions: %d events in %s, %.0f events/s, %d requests retried", n, r.Events, r.Elapsed.Round(time.Millisecond), r.EventsPerSecond(), r.Retries)
		results = append(results, r)
	}
	if err := scaleout.WriteTable(stdout, results); err != nil {
		return err
	}
	if duration > 0 {
		fmt.Fprintln(stdout)
		return scaleout.WriteMemoryTable(stdout, results[0])
	}
	return nil
}
