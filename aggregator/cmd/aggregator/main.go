// Command aggregator consumes USAGE_ENRICHED and writes every usage event to ClickHouse
// exactly once, and OUTCOMES (workflow outcomes) to its outcomes table. Flags may also be set
// through environment variables (TOKENMETER_NATS_URL, TOKENMETER_CLICKHOUSE_DSN, ...); a flag
// on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
	"github.com/tokenmeter/tokenmeter/aggregator/outcomes"
	"github.com/tokenmeter/tokenmeter/schemas/ops"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	var environment environ
	var (
		natsURL = fs.String("nats", env("TOKENMETER_NATS_URL", nats.DefaultURL), "NATS server URL")
		opsAddr = fs.String("ops", env("TOKENMETER_OPS_ADDR", ":9103"), "address of /healthz, /readyz and /metrics")
		cfg     aggregate.Config
	)
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse", env("TOKENMETER_CLICKHOUSE_DSN", aggregate.DefaultClickHouseDSN), "ClickHouse DSN")
	fs.StringVar(&cfg.ClickHouseHTTP, "clickhouse-http", env("TOKENMETER_CLICKHOUSE_HTTP", ""), "ClickHouse HTTP URL for inserts (default: from the DSN, port 9000 -> 8123)")
	fs.StringVar(&cfg.Database, "database", env("TOKENMETER_CLICKHOUSE_DATABASE", aggregate.DefaultDatabase), "ClickHouse database")
	fs.IntVar(&cfg.Partitions, "partitions", environment.int("TOKENMETER_PARTITIONS", stream.DefaultPartitions), "partitions of USAGE_ENRICHED (as the enricher's)")
	own := fs.String("own", env("TOKENMETER_OWN_PARTITIONS", ""), "partitions this aggregator writes, e.g. 0-1 or 0,2 (default all); several aggregators own disjoint sets")
	fs.IntVar(&cfg.BatchMaxRows, "batch-max-rows", environment.int("TOKENMETER_BATCH_MAX_ROWS", aggregate.DefaultBatchMaxRows), "rows per INSERT")
	fs.DurationVar(&cfg.BatchMaxWait, "batch-max-wait", environment.duration("TOKENMETER_BATCH_MAX_WAIT", aggregate.DefaultBatchMaxWait), "longest wait to fill a batch")
	fs.DurationVar(&cfg.AckWait, "ack-wait", environment.duration("TOKENMETER_ACK_WAIT", aggregate.DefaultAckWait), "how long JetStream waits for an ack before redelivering a batch")
	fs.DurationVar(&cfg.DedupWindow, "dedup-window", environment.duration("TOKENMETER_DEDUP_WINDOW", aggregate.DefaultDedupWindow), "ingest-time window of the in-memory de-duplication set")
	// Test-only: TOKENMETER_TEST_EXIT_AFTER_INSERT=N makes the process exit (status 3) right
	// after its Nth successful INSERT, before acking the batch — the window fault-injection
	// tests (bench/chaos) must hit. Never set it in production.
	exitAfter := environment.int("TOKENMETER_TEST_EXIT_AFTER_INSERT", 0)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := errors.Join(environment.errs...); err != nil {
		log.Error("invalid environment", "err", err)
		return 2
	}
	if *own != "" {
		var err error
		if cfg.Owned, err = aggregate.ParsePartitions(*own); err != nil {
			log.Error("invalid -own", "err", err)
			return 2
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer, cfg.Logger = reg, log
	if exitAfter > 0 {
		var inserts atomic.Int64
		cfg.BeforeAck = func(partition, rows int) error {
			if rows > 0 && inserts.Add(1) >= int64(exitAfter) {
				log.Warn("TOKENMETER_TEST_EXIT_AFTER_INSERT: exiting after an insert, before its ack", "partition", partition, "inserts", exitAfter)
				os.Exit(3)
			}
			return nil
		}
	}

	nc, err := nats.Connect(*natsURL, nats.Name("tokenmeter-aggregator"), nats.MaxReconnects(-1))
	if err != nil {
		log.Error("connect to NATS", "url", *natsURL, "err", err)
		return 1
	}
	defer nc.Close()
	agg, err := aggregate.New(cfg, nc)
	if err != nil {
		log.Error("start aggregator", "err", err)
		return 2
	}
	// Workflow outcomes (POST /v1/outcomes) go to ClickHouse beside the usage events.
	outs, err := outcomes.New(outcomes.Config{
		ClickHouseDSN: cfg.ClickHouseDSN, Database: cfg.Database, Registerer: reg, Logger: log.With("component", "outcomes"),
	}, nc)
	if err != nil {
		log.Error("start outcome writer", "err", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	mux := http.NewServeMux()
	ops.Register(mux, reg, agg.Ready, outs.Ready, func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("NATS %s: %s", *natsURL, nc.Status())
		}
		return nil
	})
	defer ops.Serve(*opsAddr, mux, func(err error) { log.Error("ops endpoints", "err", err); stop() })()

	log.Info("aggregator running", "nats", *natsURL, "ops", *opsAddr, "database", cfg.Database, "partitions", cfg.Partitions, "own", *own)
	outsDone := make(chan error, 1)
	go func() {
		err := outs.Run(ctx)
		if err != nil {
			stop() // one failing writer stops the command, so that it restarts whole
		}
		outsDone <- err
	}()
	err = agg.Run(ctx)
	stop()
	if err = errors.Join(err, <-outsDone); err != nil {
		log.Error("aggregator stopped", "err", err)
		return 1
	}
	log.Info("aggregator stopped")
	return 0
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// environ reads defaults from the environment. It collects unparsable values, so that the
// command refuses to start and names each of them instead of silently using a default.
type environ struct{ errs []error }

func (e *environ) int(key string, def int) int {
	v, ok := os.LookupEnv(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not an integer", key, v))
	}
	return n
}

func (e *environ) duration(key string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(key)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a duration", key, v))
	}
	return d
}
