// Package standalone runs the whole pipeline in one process: an embedded NATS JetStream server
// with its file store under the data directory, and the collector, enricher and aggregator side
// by side, each the same Run it is when deployed on its own.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
	"github.com/tokenmeter/tokenmeter/aggregator/outcomes"
	"github.com/tokenmeter/tokenmeter/alerter/alerting"
	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/collector/collect"
	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/enricher/enrich"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/ops"
	"github.com/tokenmeter/tokenmeter/stage/streammetrics"
)

// StageLabel is the pprof label whose value names the stage a goroutine works for:
// collector, enricher, aggregator, alerter, outcomes or nats.
const StageLabel = "stage"

// Config configures the single-process pipeline.
type Config struct {
	// DataDir holds the embedded NATS file store (DataDir/nats).
	DataDir string
	// HTTPAddr is the collector's address; OpsAddr serves /healthz, /readyz and /metrics.
	HTTPAddr, OpsAddr string
	// NATSAddr, when set, lets emitters outside the process reach the embedded NATS server.
	NATSAddr string
	// NATSCredsDir holds the seed of every NATS identity (natsauth), created on first start
	// (default DataDir/nats/creds). The server admits only these identities, each with its
	// role's permissions, and each stage connects in-process as its own role; an emitter
	// added there (natsauth.AddEmitter) is admitted within EmitterPoll.
	NATSCredsDir string
	// NATSTLS, when its certificate is set, makes the NATS listener TLS-only.
	NATSTLS       TLS
	ClickHouseDSN string
	Database      string
	Partitions    int
	// Streams sizes the streams (stream.Options; its Partitions is set from Partitions).
	Streams stream.Options
	// BatchMaxRows and BatchMaxWait size the aggregator's INSERTs (aggregate.Config); zero
	// takes BatchRows / Partitions rows (see BatchRows) and the aggregator's default wait.
	BatchMaxRows int
	BatchMaxWait time.Duration
	PricingDir   string
	// AttributionFile holds the enricher's attribution rules (enricher/attribute); "" = none.
	AttributionFile string
	// EmitterBindingsFile binds each NATS emitter identity's events to tags and teams
	// (enrich.ParseBindings); "" = none.
	EmitterBindingsFile string
	// KeysFile is the collector's API-key registry (collector/keys); "" = no authentication.
	KeysFile string
	// TagPolicyFile is the collector's required-tags policy (collect.TagPolicy); "" = none.
	TagPolicyFile string
	// RulesFile is the alerter's rules file; "" runs its built-in rules without receivers.
	RulesFile string
	// SilenceToken, when set, is the bearer token creating or expiring a silence through
	// the ops address needs (alerting.Config.SilenceToken).
	SilenceToken string
	Registerer   *prometheus.Registry
	Logger       *slog.Logger
}

// DedupMaxBytes bounds the single process's de-duplication sets (aggregate.Config
// DedupMaxBytes), within the default memory limit: past it they keep less than the hour
// (never less than 5 minutes) and older copies are looked up in ClickHouse.
const DedupMaxBytes = 128 << 20

// BatchRows is what the aggregator's partitions of one process share of rows per INSERT
// unless Config.BatchMaxRows says otherwise: each partition gets BatchRows / Partitions
// rows (at least MinBatchRows). A partition holds up to three batches — one inserting, one
// waiting, one filling — and a row costs ~1 KB decoded with its message, so with the default
// 4 partitions the aggregator holds at most ~200 MB at full speed, where the aggregator's own
// default of 50,000 rows per partition held ~600 MB and took the single process past 1 GiB.
// Below full speed a batch closes after BatchMaxWait and holds fewer rows anyway.
const (
	BatchRows    = 64_000
	MinBatchRows = 1_000
)

// withDefaults fills the fields whose zero value means a default.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Streams == (stream.Options{}) {
		c.Streams = stream.DefaultOptions
	}
	c.Streams.Partitions = c.Partitions
	if c.BatchMaxRows == 0 && c.Partitions > 0 {
		c.BatchMaxRows = max(BatchRows/c.Partitions, MinBatchRows)
	}
	return c
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir must be set"))
	}
	if c.ClickHouseDSN == "" {
		errs = append(errs, errors.New("ClickHouse DSN must be set"))
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("partitions (%d) must be within 1..1024", c.Partitions))
	}
	if err := c.Streams.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.NATSAddr != "" {
		if _, _, err := net.SplitHostPort(c.NATSAddr); err != nil {
			errs = append(errs, fmt.Errorf("NATS address %q: %v", c.NATSAddr, err))
		}
	}
	return errors.Join(errs...)
}

// Pipeline is a started single-process pipeline.
type Pipeline struct {
	cfg       Config
	ns        *server.Server
	natsOpts  *server.Options
	nc        *nats.Conn // the process's own identity: every permission, its key never on disk
	conns     map[natsauth.Role]*nats.Conn
	credsDir  string
	collector *collect.Collector
	httpLn    net.Listener
	enricher  *enrich.Enricher
	agg       *aggregate.Aggregator
	outcomes  *outcomes.Writer
	alerter   *alerting.Alerter
	budgets   *budget.Enforcer
	ops       *http.Server
	opsLn     net.Listener
	done      chan error
}

// Start starts NATS and the three stages; they run until ctx is done, then Wait returns.
func Start(ctx context.Context, cfg Config) (*Pipeline, error) {
	cfg = cfg.withDefaults()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
		cfg.Registerer.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("standalone config: %w", err)
	}
	p := &Pipeline{cfg: cfg, done: make(chan error, 1)}
	if err := p.startNATS(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	var err error
	p.budgets = budget.NewEnforcer(nil, log.With("stage", "collector"))
	p.collector, err = collect.New(collect.Config{
		Addr: cfg.HTTPAddr, Partitions: cfg.Partitions, Streams: cfg.Streams, Budgets: p.budgets,
		KeysFile: cfg.KeysFile, TagPolicyFile: cfg.TagPolicyFile,
		Registerer: cfg.Registerer, Logger: log.With("stage", "collector"),
	}, p.conns[natsauth.Collector])
	if err != nil {
		p.stopNATS()
		return nil, err
	}
	// The streams' fill and the durable consumers' backlogs, for deploy/prometheus's rules,
	// asked as the enricher's identity (which may read what Ensure creates).
	if js, err := jetstream.New(p.conns[natsauth.Enricher]); err == nil {
		cfg.Registerer.MustRegister(streammetrics.NewCollector(js, cfg.Partitions))
	}
	p.enricher, err = enrich.New(enrich.Config{
		PricingDir: cfg.PricingDir, AttributionFile: cfg.AttributionFile, EmitterBindingsFile: cfg.EmitterBindingsFile,
		Streams: cfg.Streams, Registerer: cfg.Registerer, Logger: log.With("stage", "enricher"),
	}, p.conns[natsauth.Enricher])
	if err != nil {
		p.stopNATS()
		return nil, err
	}
	p.agg, err = aggregate.New(aggregate.Config{
		ClickHouseDSN: cfg.ClickHouseDSN, Database: cfg.Database, Partitions: cfg.Partitions, Streams: cfg.Streams,
		BatchMaxRows: cfg.BatchMaxRows, BatchMaxWait: cfg.BatchMaxWait, DedupMaxBytes: DedupMaxBytes,
		Registerer: cfg.Registerer, Logger: log.With("stage", "aggregator"),
	}, p.conns[natsauth.Aggregator])
	if err != nil {
		p.stopNATS()
		return nil, err
	}
	p.outcomes, err = outcomes.New(outcomes.Config{
		ClickHouseDSN: cfg.ClickHouseDSN, Database: cfg.Database,
		Registerer: cfg.Registerer, Logger: log.With("stage", "outcomes"),
	}, p.conns[natsauth.Aggregator])
	if err != nil {
		p.stopNATS()
		return nil, err
	}
	p.alerter, err = alerting.New(alerting.Config{
		RulesFile: cfg.RulesFile, SilenceToken: cfg.SilenceToken, ClickHouseDSN: cfg.ClickHouseDSN, Database: cfg.Database, Streams: cfg.Streams,
		Registerer: cfg.Registerer, Logger: log.With("stage", "alerter"),
	}, p.conns[natsauth.Alerter])
	if err != nil {
		p.stopNATS()
		return nil, err
	}
	p.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		p.stopNATS()
		return nil, fmt.Errorf("listen for the collector on %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.OpsAddr != "" {
		mux := http.NewServeMux()
		ops.Register(mux, cfg.Registerer, p.Ready)
		mux.Handle("/api/v2/", p.alerter.SilenceHandler()) // silences (Alertmanager API v2)
		p.opsLn, err = net.Listen("tcp", cfg.OpsAddr)
		if err != nil {
			p.stopNATS()
			return nil, fmt.Errorf("listen for ops endpoints on %s: %w", cfg.OpsAddr, err)
		}
		p.ops = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = p.ops.Serve(p.opsLn) }()
	}
	go p.watchEmitters(ctx)
	go p.run(ctx)
	return p, nil
}

// run runs the stages until ctx is done or one of them fails; a failing stage stops the rest.
func (p *Pipeline) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Streams exist before any stage publishes or consumes, whatever order they start in.
	js, err := jetstream.New(p.nc)
	if err == nil {
		err = stream.Ensure(ctx, js, p.cfg.Streams)
	}
	var cjs jetstream.JetStream
	if err == nil {
		cjs, err = jetstream.New(p.conns[natsauth.Collector])
	}
	if err == nil {
		err = p.budgets.Watch(ctx, cjs) // budget hard caps the collector enforces
	}
	if err != nil {
		p.finish(err)
		return
	}
	stages := []struct {
		name string
		run  func(context.Context) error
	}{
		{"aggregator", p.agg.Run}, {"outcomes", p.outcomes.Run}, {"enricher", p.enricher.Run}, {"alerter", p.alerter.Run}, {"collector", func(ctx context.Context) error { return p.collector.Serve(ctx, p.httpLn) }},
	}
	errc := make(chan error, len(stages))
	for _, s := range stages {
		// The label lets a CPU profile tell the stages apart (bench/e2e reports CPU per event
		// of each); the goroutines a stage starts inherit it.
		go pprof.Do(ctx, pprof.Labels(StageLabel, s.name), func(ctx context.Context) {
			err := s.run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", s.name, err)
			}
			cancel()
			errc <- err
		})
	}
	var errs []error
	for range stages {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	p.finish(errors.Join(errs...))
}

func (p *Pipeline) finish(err error) {
	if p.ops != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.ops.Shutdown(shutdownCtx)
		cancel()
	}
	p.stopNATS()
	p.done <- err
}

// Wait blocks until the pipeline has stopped and returns why.
func (p *Pipeline) Wait() error { return <-p.done }

// Ready joins the readiness of every stage.
func (p *Pipeline) Ready() error {
	return errors.Join(p.collector.Ready(), p.enricher.Ready(), p.agg.Ready(), p.outcomes.Ready(), p.alerter.Ready())
}

// CollectorAddr is where the collector listens.
func (p *Pipeline) CollectorAddr() string { return p.httpLn.Addr().String() }

// OpsAddr is where /healthz, /readyz and /metrics are served ("" when disabled).
func (p *Pipeline) OpsAddr() string {
	if p.opsLn == nil {
		return ""
	}
	return p.opsLn.Addr().String()
}

// NATS returns the pipeline's own connection to the embedded server, for emitters in-process.
// It has every permission (its key exists only in this process's memory); a stage's
// connection, with its role's permissions only, is NATSAs.
func (p *Pipeline) NATS() *nats.Conn { return p.nc }

// NATSURL is the embedded server's client URL ("" when it only accepts in-process clients).
func (p *Pipeline) NATSURL() string {
	if p.cfg.NATSAddr == "" {
		return ""
	}
	return p.ns.ClientURL()
}
