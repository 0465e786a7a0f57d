// Command aggregator consumes USAGE_ENRICHED and writes every usage event to ClickHouse
// exactly once, and OUTCOMES (workflow outcomes) to its outcomes table. Every flag may also be
// set through an environment variable (ops.ApplyEnv: TOKENMETER_NATS_URL, TOKENMETER_OPS_ADDR,
// TOKENMETER_CLICKHOUSE_DSN, TOKENMETER_CLICKHOUSE_DATABASE, TOKENMETER_OWN_PARTITIONS, and
// TOKENMETER_<FLAG> for the others, e.g. TOKENMETER_BATCH_MAX_WAIT); a flag on the command
// line wins.
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
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
	"github.com/tokenmeter/tokenmeter/aggregator/outcomes"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
	"github.com/tokenmeter/tokenmeter/stage/streammetrics"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	fs := flag.NewFlagSet("aggregator", flag.ContinueOnError)
	var (
		natsURL = fs.String("nats", nats.DefaultURL, "NATS server URL")
		natsCfg natsconn.Config
		opsAddr = fs.String("ops", ":9103", "address of /healthz, /readyz and /metrics")
		own     = fs.String("own", "", "partitions this aggregator writes, e.g. 0-1 or 0,2 (default all); several aggregators own disjoint sets")
		cfg     aggregate.Config
	)
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse", aggregate.DefaultClickHouseDSN, "ClickHouse DSN")
	chPasswordFile := fs.String("clickhouse-password-file", "", "file holding the password of the ClickHouse DSN's user, kept out of the DSN (a Kubernetes Secret, a compose volume)")
	fs.StringVar(&cfg.ClickHouseHTTP, "clickhouse-http", "", "ClickHouse HTTP URL for inserts (default: from the DSN, port 9000 -> 8123)")
	fs.StringVar(&cfg.Database, "database", aggregate.DefaultDatabase, "ClickHouse database")
	chCluster := fs.String("clickhouse-cluster", "", "a sharded, replicated ClickHouse instead of the DSN's server: NAME=host:port,host:port;host:port,host:port (shards by ';', each shard's replicas by ','; host:port/httpport when the HTTP port is not the standard one); the DSN gives user, password and settings")
	partitionShards := fs.String("partition-shards", "", "with -clickhouse-cluster: the shard of each partition in order, e.g. 0,1,0,1 (default partition mod shards)")
	fs.StringVar(&cfg.Cluster.LocalDatabase, "local-database", "", "with -clickhouse-cluster: the shard-local database of the Replicated tables (default <database>_local)")
	fs.IntVar(&cfg.Partitions, "partitions", stream.DefaultPartitions, "partitions of USAGE_ENRICHED (as the enricher's)")
	fs.IntVar(&cfg.BatchMaxRows, "batch-max-rows", aggregate.DefaultBatchMaxRows, "rows per INSERT")
	fs.DurationVar(&cfg.BatchMaxWait, "batch-max-wait", aggregate.DefaultBatchMaxWait, "longest wait to fill a batch")
	fs.DurationVar(&cfg.AckWait, "ack-wait", aggregate.DefaultAckWait, "how long JetStream waits for an ack before redelivering a batch")
	fs.StringVar(&cfg.Instance, "instance", "", "this aggregator's name in the partition leases (default the host name): a restart under the same name takes its partitions back at once, another name waits for them")
	fs.Int64Var(&cfg.DedupMaxBytes, "dedup-max-bytes", aggregate.DefaultDedupMaxBytes, "memory of the de-duplication sets over all owned partitions; past it the oldest events leave them early and their copies are looked up in ClickHouse (negative: unbounded)")
	fs.DurationVar(&cfg.DedupWindow, "dedup-window", aggregate.DefaultDedupWindow, "how long the in-memory de-duplication sets keep an event (from the later of its receipt and its own time); older copies are looked up in ClickHouse")
	cfg.Streams = stream.DefaultOptions
	cfg.Streams.RegisterFlags(fs)
	natsCfg.Register(fs, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := ops.ApplyEnv(fs, ops.StageEnv); err != nil {
		log.Error("invalid environment", "err", err)
		return 2
	}
	var err error
	if cfg.ClickHouseDSN, err = ops.ClickHouseDSN(cfg.ClickHouseDSN, *chPasswordFile); err != nil {
		log.Error("invalid -clickhouse-password-file", "err", err)
		return 2
	}
	if cl, err := chcluster.Parse(*chCluster); err != nil {
		log.Error("invalid -clickhouse-cluster", "err", err)
		return 2
	} else if cl.Enabled() {
		cl.LocalDatabase = cfg.Cluster.LocalDatabase
		if cl.PartitionShards, err = chcluster.ParseShardMap(*partitionShards); err != nil {
			log.Error("invalid -partition-shards", "err", err)
			return 2
		}
		cfg.Cluster = cl
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
	if err := testHooks(&cfg, log); err != nil {
		log.Error("invalid environment", "err", err)
		return 2
	}

	nc, err := natsconn.Connect(*natsURL, "tokenmeter-aggregator", natsCfg, nats.MaxReconnects(-1))
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

	// The streams' fill and the durable consumers' backlogs, for deploy/prometheus's rules.
	if js, err := jetstream.New(nc); err == nil {
		reg.MustRegister(streammetrics.NewCollector(js, cfg.Partitions))
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
