package aggregate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/aggregator/outcomes"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage"
	"github.com/tokenmeter/tokenmeter/stage/chconfig"
	"github.com/tokenmeter/tokenmeter/stage/streammetrics"
)

// Flags holds what the aggregator's command line gives besides Config's own fields: the
// ClickHouse password file and the flags that need parsing.
type Flags struct {
	ClickHouse      chconfig.Config
	Own             string
	Cluster         string
	PartitionShards string
}

// RegisterFlags adds the aggregator's flags to fs, with c's values as their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet, f *Flags) {
	f.ClickHouse.RegisterFlags(fs)
	fs.StringVar(&f.Own, "own", f.Own, "partitions this aggregator writes, e.g. 0-1 or 0,2 (default all); several aggregators own disjoint sets")
	fs.StringVar(&c.ClickHouseHTTP, "clickhouse-http", c.ClickHouseHTTP, "ClickHouse HTTP URL for inserts (default: from the DSN, port 9000 -> 8123)")
	fs.StringVar(&f.Cluster, "clickhouse-cluster", f.Cluster, "a sharded, replicated ClickHouse instead of the DSN's server: NAME=host:port,host:port;host:port,host:port (shards by ';', each shard's replicas by ','; host:port/httpport when the HTTP port is not the standard one); the DSN gives user, password and settings")
	fs.StringVar(&f.PartitionShards, "partition-shards", f.PartitionShards, "with -clickhouse-cluster: the shard of each partition in order, e.g. 0,1,0,1 (default partition mod shards)")
	fs.StringVar(&c.Cluster.LocalDatabase, "local-database", c.Cluster.LocalDatabase, "with -clickhouse-cluster: the shard-local database of the Replicated tables (default <database>_local)")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of USAGE_ENRICHED (as the enricher's)")
	fs.IntVar(&c.BatchMaxRows, "batch-max-rows", c.BatchMaxRows, "rows per INSERT")
	fs.DurationVar(&c.BatchMaxWait, "batch-max-wait", c.BatchMaxWait, "longest wait to fill a batch")
	fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "how long JetStream waits for an ack before redelivering a batch")
	fs.StringVar(&c.Instance, "instance", c.Instance, "this aggregator's name in the partition leases (default the host name): a restart under the same name takes its partitions back at once, another name waits for them")
	fs.Int64Var(&c.DedupMaxBytes, "dedup-max-bytes", c.DedupMaxBytes, "memory of the de-duplication sets over all owned partitions; past it the oldest events leave them early and their copies are looked up in ClickHouse (negative: unbounded)")
	fs.DurationVar(&c.DedupWindow, "dedup-window", c.DedupWindow, "how long the in-memory de-duplication sets keep an event (from the later of its receipt and its own time); older copies are looked up in ClickHouse")
	c.Streams.RegisterFlags(fs)
}

// apply moves what f gives into c, naming each flag it cannot read.
func (f Flags) apply(c *Config) error {
	var errs []error
	dsn, err := f.ClickHouse.ResolvedDSN()
	errs = append(errs, err)
	c.ClickHouseDSN, c.Database = dsn, f.ClickHouse.Database
	if dsn == "" { // the password file was refused: check the DSN as given
		c.ClickHouseDSN = f.ClickHouse.DSN
	}
	if cl, err := chcluster.Parse(f.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("-clickhouse-cluster: %w", err))
	} else if cl.Enabled() {
		cl.LocalDatabase = c.Cluster.LocalDatabase
		if cl.PartitionShards, err = chcluster.ParseShardMap(f.PartitionShards); err != nil {
			errs = append(errs, fmt.Errorf("-partition-shards: %w", err))
		}
		c.Cluster = cl
	}
	if f.Own != "" {
		if c.Owned, err = ParsePartitions(f.Own); err != nil {
			errs = append(errs, fmt.Errorf("-own: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Command is the aggregator as a process of its own (cmd/aggregator), with the writer of
// workflow outcomes beside it. hook, when not nil, may change the configuration last (the
// fault-injection tests' crash hook).
func Command(hook func(*Config, *slog.Logger) error) stage.Command {
	cfg := Config{Partitions: stream.DefaultPartitions, BatchMaxRows: DefaultBatchMaxRows, BatchMaxWait: DefaultBatchMaxWait,
		AckWait: DefaultAckWait, DedupMaxBytes: DefaultDedupMaxBytes, DedupWindow: DefaultDedupWindow, Streams: stream.DefaultOptions}
	f := Flags{ClickHouse: chconfig.Default}
	return stage.Command{
		Name:    "aggregator",
		OpsAddr: ":9103",
		Flags:   func(fs *flag.FlagSet) { cfg.RegisterFlags(fs, &f) },
		Validate: func() error {
			return errors.Join(f.apply(&cfg), cfg.withDefaults().Validate())
		},
		Start: func(p stage.Process) (stage.Service, error) {
			cfg.Registerer, cfg.Logger = p.Registry, p.Log
			if hook != nil {
				if err := hook(&cfg, p.Log); err != nil {
					return nil, err
				}
			}
			agg, err := New(cfg, p.NATS)
			if err != nil {
				return nil, err
			}
			// Workflow outcomes (POST /v1/outcomes) go to ClickHouse beside the usage events.
			outs, err := outcomes.New(outcomes.Config{
				ClickHouseDSN: cfg.ClickHouseDSN, Database: cfg.Database, Registerer: p.Registry, Logger: p.Log.With("component", "outcomes"),
			}, p.NATS)
			if err != nil {
				return nil, fmt.Errorf("start the outcome writer: %w", err)
			}
			// The streams' fill and the durable consumers' backlogs, for deploy/prometheus's rules.
			if js, err := jetstream.New(p.NATS); err == nil {
				p.Registry.MustRegister(streammetrics.NewCollector(js, cfg.Partitions))
			}
			return &withOutcomes{agg: agg, outs: outs, nc: p.NATS, url: p.NATSURL}, nil
		},
	}
}

// withOutcomes runs the aggregator and the outcome writer as one service: one failing stops
// both, so that the command restarts whole.
type withOutcomes struct {
	agg  *Aggregator
	outs *outcomes.Writer
	nc   *nats.Conn
	url  string
}

func (s *withOutcomes) Ready() error {
	var natsErr error
	if !s.nc.IsConnected() {
		natsErr = fmt.Errorf("NATS %s: %s", s.url, s.nc.Status())
	}
	return errors.Join(s.agg.Ready(), s.outs.Ready(), natsErr)
}

func (s *withOutcomes) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	outsDone := make(chan error, 1)
	go func() {
		err := s.outs.Run(ctx)
		if err != nil {
			stop()
		}
		outsDone <- err
	}()
	err := s.agg.Run(ctx)
	stop()
	return errors.Join(err, <-outsDone)
}
