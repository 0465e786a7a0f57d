// Package e2e measures the whole tokenmeter pipeline on this machine: the single-process
// pipeline (deploy/standalone, with NATS JetStream embedded, what `tokenmeter run` runs) in a
// process of its own, the local ClickHouse behind it, and load from this process. A run starts
// a fresh pipeline process on a fresh database, sends pre-generated events through the HTTP
// collector or the Go emitter, stops the clock when ClickHouse holds every one of them, stops
// the process and drops the database.
//
// What a run reports: events/s from the first request until the last event is queryable;
// intake events/s until the last 202 arrived; for every MarkerEvery-th body the latency from
// its 202 until its first event is queryable; the latency of the HTTP requests; the CPU time
// per event of the pipeline process, of this one (the load generator) and of the ClickHouse
// server; and the peak RSS (VmHWM) of each of the three.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Defaults of Config.
const (
	DefaultEvents      = 1_000_000
	DefaultBatchSize   = 1000
	DefaultClients     = 4
	DefaultMarkerEvery = 10
	DefaultPartitions  = 4
	DefaultCountPoll   = 10 * time.Millisecond
	DefaultMarkerPoll  = 100 * time.Millisecond
	DefaultTimeout     = 2 * time.Minute
)

// DSN returns the ClickHouse DSN from TOKENMETER_CLICKHOUSE_DSN, or the local server's.
func DSN() string {
	if v := os.Getenv("TOKENMETER_CLICKHOUSE_DSN"); v != "" {
		return v
	}
	return "clickhouse://127.0.0.1:9000"
}

// Config configures the measurements. Zero fields take the defaults above.
type Config struct {
	ClickHouseDSN string
	// BatchSize is the number of events per HTTP body.
	BatchSize int
	// Clients is the number of concurrent HTTP requests.
	Clients int
	// MarkerEvery: the first event of every MarkerEvery-th body is tracked until it is
	// queryable.
	MarkerEvery int
	// Partitions of the pipeline, and of the emitter.
	Partitions int
	// InsertRows and InsertWait size the aggregator's INSERTs; zero takes its defaults.
	InsertRows int
	InsertWait time.Duration
	// CountPoll is the shortest wait between polls of the row count that stop the clock
	// (waitCount); MarkerPoll how often the outstanding marker events are looked up.
	CountPoll, MarkerPoll time.Duration
	// Timeout bounds one run, from its first request until every event is queryable.
	Timeout time.Duration
	// ClickHousePIDFile optionally names the ClickHouse server's pid file; without a live pid
	// in it the server is the first process with "clickhouse-server" in its command line. Its
	// CPU time is reported when it is found.
	ClickHousePIDFile string
	// Verbose makes the pipeline process log its warnings and errors to stderr.
	Verbose bool
	// HeapProfile, when set, makes every run write the pipeline process's in-use heap profile
	// at its largest Go heap to HeapProfile.<run name>.
	HeapProfile string
	// Warmup, when set, is sent to every fresh pipeline, and stored, before the clock starts:
	// the run then measures a pipeline that has been running — its heap grown, its
	// de-duplication sets and ClickHouse's tables holding events — as a deployment is for
	// all but its first minute. A fresh process spends much of its first million events
	// touching memory for the first time (see docs/benchmarks.md). Its ids must not be the
	// measured workload's (another generator seed).
	Warmup *Workload
	// Logger receives the benchmark's own warnings; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ClickHouseDSN == "" {
		c.ClickHouseDSN = DSN()
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.BatchSize, DefaultBatchSize)
	def(&c.Clients, DefaultClients)
	def(&c.MarkerEvery, DefaultMarkerEvery)
	def(&c.Partitions, DefaultPartitions)
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defd(&c.CountPoll, DefaultCountPoll)
	defd(&c.MarkerPoll, DefaultMarkerPoll)
	defd(&c.Timeout, DefaultTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field (after defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, err := clickhouse.ParseDSN(c.ClickHouseDSN); err != nil {
		errs = append(errs, fmt.Errorf("ClickHouse DSN %q: %w", c.ClickHouseDSN, err))
	}
	for _, v := range [...]struct {
		name string
		v    int
	}{{"batch size", c.BatchSize}, {"clients", c.Clients}, {"marker every", c.MarkerEvery}} {
		if v.v < 1 {
			errs = append(errs, fmt.Errorf("%s (%d) must be positive", v.name, v.v))
		}
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("partitions (%d) must be within 1..1024", c.Partitions))
	}
	for _, v := range [...]struct {
		name string
		v    time.Duration
	}{{"count poll", c.CountPoll}, {"marker poll", c.MarkerPoll}, {"timeout", c.Timeout}} {
		if v.v < 0 {
			errs = append(errs, fmt.Errorf("%s (%s) must be positive", v.name, v.v))
		}
	}
	return errors.Join(errs...)
}

// Bench runs measurements against one ClickHouse server. Runs must not overlap: each one
// measures the whole process.
type Bench struct {
	cfg   Config
	conn  driver.Conn
	chPID int // 0 when the ClickHouse server process was not found
}

// New connects to ClickHouse and finds its server process.
func New(cfg Config) (*Bench, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid benchmark config: %w", err)
	}
	cfg = cfg.withDefaults()
	opts, err := clickhouse.ParseDSN(cfg.ClickHouseDSN)
	if err != nil {
		return nil, fmt.Errorf("parse ClickHouse DSN: %w", err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse at %s: %w", cfg.ClickHouseDSN, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ping ClickHouse at %s (deploy/clickhouse/local.sh start starts one): %w", cfg.ClickHouseDSN, err)
	}
	b := &Bench{cfg: cfg, conn: conn}
	if pid, err := ServerProcess(cfg.ClickHousePIDFile, firstAddr(opts), "clickhouse-server"); err == nil {
		b.chPID = pid
	} else {
		cfg.Logger.Warn("ClickHouse CPU time will not be reported", "err", err)
	}
	return b, nil
}

// firstAddr is the address a DSN's connections go to first.
func firstAddr(opts *clickhouse.Options) string {
	if len(opts.Addr) == 0 {
		return ""
	}
	return opts.Addr[0]
}

// SetWarmup makes every later run send w first (Config.Warmup).
func (b *Bench) SetWarmup(w *Workload) { b.cfg.Warmup = w }

// ClickHousePID is the pid of the ClickHouse server whose CPU time is measured, 0 if unknown.
func (b *Bench) ClickHousePID() int { return b.chPID }

// Close closes the ClickHouse connection.
func (b *Bench) Close() error { return b.conn.Close() }
