// Package enrich is the enricher stage: it reads validated event batches from USAGE_RAW,
// prices and attributes every event, and publishes the result to USAGE_ENRICHED on the same
// partition, as Arrow batches.
//
// The stage is stateless: de-duplication by event id happens in the aggregator, the single
// writer of each partition, next to the store it protects. Any number of enrichers can share
// the durable consumer.
package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// ConsumerName is the durable consumer all enrichers share on USAGE_RAW.
const ConsumerName = "enricher"

// Config configures the enricher.
type Config struct {
	// PricingDir holds the pricing files; empty means the catalogue shipped in the binary.
	PricingDir string
	// Workers is the number of concurrent fetch-price-publish loops.
	Workers int
	// FetchBatch is how many raw messages a worker fetches at once.
	FetchBatch int
	// AckWait is how long JetStream waits for an ack before redelivering a raw message.
	AckWait    time.Duration
	Streams    stream.Options
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.FetchBatch == 0 {
		c.FetchBatch = 64
	}
	if c.AckWait == 0 {
		c.AckWait = time.Minute
	}
	if c.Streams == (stream.Options{}) {
		c.Streams = stream.DefaultOptions
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers (%d) must be at least 1", c.Workers))
	}
	if c.FetchBatch < 1 {
		errs = append(errs, fmt.Errorf("fetch batch (%d) must be at least 1", c.FetchBatch))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack wait (%s) must be at least 1s", c.AckWait))
	}
	return errors.Join(errs...)
}

// Enricher is the running stage.
type Enricher struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	catalog atomic.Pointer[pricing.Catalog]
	m       metrics
}

type metrics struct {
	events   prometheus.Counter
	unpriced *prometheus.CounterVec
	batches  prometheus.Counter
	dead     prometheus.Counter
}

// New loads the pricing catalogue and prepares the stage; it does not touch NATS yet.
func New(cfg Config, nc *nats.Conn) (*Enricher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enricher config: %w", err)
	}
	var cat *pricing.Catalog
	var err error
	if cfg.PricingDir != "" {
		cat, err = pricing.LoadDir(cfg.PricingDir)
	} else {
		cat, err = pricing.Default()
	}
	if err != nil {
		return nil, fmt.Errorf("load pricing catalogue: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	e := &Enricher{cfg: cfg, nc: nc, js: js}
	e.catalog.Store(cat)
	e.m = metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_events_total", Help: "Events priced and published to USAGE_ENRICHED."}),
		unpriced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_unpriced_events_total",
			Help: "Events whose provider or model has no price; stored with priced = 0, never as $0."},
			[]string{"provider"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_batches_total", Help: "Raw batches processed."}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_dead_letters_total", Help: "Raw messages quarantined in USAGE_DEAD."}),
	}
	for _, c := range []prometheus.Collector{e.m.events, e.m.unpriced, e.m.batches, e.m.dead} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("register enricher metrics: %w", err)
		}
	}
	return e, nil
}

// Catalog returns the pricing catalogue in force.
func (e *Enricher) Catalog() *pricing.Catalog { return e.catalog.Load() }

// Ready reports whether the stage can work: NATS must be connected.
func (e *Enricher) Ready() error {
	if !e.nc.IsConnected() {
		return fmt.Errorf("enricher: NATS is %s", e.nc.Status())
	}
	return nil
}

// Run consumes USAGE_RAW until ctx is done.
func (e *Enricher) Run(ctx context.Context) error {
	if err := stream.Ensure(ctx, e.js, e.cfg.Streams); err != nil {
		return err
	}
	cons, err := e.js.CreateOrUpdateConsumer(ctx, stream.Raw, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "prices raw usage batches into USAGE_ENRICHED",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.cfg.AckWait,
		MaxAckPending: e.cfg.Workers * e.cfg.FetchBatch * 4,
		FilterSubject: stream.RawPrefix + "*",
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", ConsumerName, stream.Raw, err)
	}
	e.cfg.Logger.Info("enricher running", "workers", e.cfg.Workers, "catalogue", e.Catalog().Version())
	errc := make(chan error, e.cfg.Workers)
	for i := 0; i < e.cfg.Workers; i++ {
		go func() { errc <- e.work(ctx, cons) }()
	}
	var first error
	for i := 0; i < e.cfg.Workers; i++ {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (e *Enricher) work(ctx context.Context, cons jetstream.Consumer) error {
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(e.cfg.FetchBatch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.cfg.Logger.Warn("fetch from USAGE_RAW", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		var batchMsgs []jetstream.Msg
		for m := range msgs.Messages() {
			batchMsgs = append(batchMsgs, m)
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			e.cfg.Logger.Warn("fetch from USAGE_RAW", "err", err)
		}
		if len(batchMsgs) > 0 {
			e.process(ctx, batchMsgs)
		}
	}
	return nil
}

// process prices a fetched set of raw messages, publishes each result and acks the raw
// message only once JetStream has stored its enriched counterpart. The enriched message id is
// derived from the raw message's stream sequence, so a redelivered raw message republishes
// under the same id and JetStream stores it once (and the aggregator drops its events as
// duplicates should the redelivery come after the duplicate window).
func (e *Enricher) process(ctx context.Context, msgs []jetstream.Msg) {
	type pending struct {
		msg jetstream.Msg
		ack jetstream.PubAckFuture
	}
	var inflight []pending
	for _, m := range msgs {
		meta, err := m.Metadata()
		if err != nil {
			e.deadLetter(ctx, m, 0, fmt.Errorf("read message metadata: %w", err))
			continue
		}
		out, p, err := e.enrich(m)
		if err != nil {
			e.deadLetter(ctx, m, meta.Sequence.Stream, err)
			continue
		}
		pm := &nats.Msg{Subject: stream.EnrichedSubject(p), Data: out, Header: nats.Header{}}
		pm.Header.Set(stream.HeaderSchema, batch.SchemaName)
		pm.Header.Set(jetstream.MsgIDHeader, "enr-"+strconv.FormatUint(meta.Sequence.Stream, 10))
		f, err := e.js.PublishMsgAsync(pm)
		if err != nil {
			e.cfg.Logger.Warn("publish to USAGE_ENRICHED; the raw message will be redelivered", "err", err)
			_ = m.NakWithDelay(time.Second)
			continue
		}
		inflight = append(inflight, pending{m, f})
	}
	for _, p := range inflight {
		select {
		case <-p.ack.Ok():
			// The enriched message is stored: acknowledge even while shutting down, or the raw
			// message comes again for nothing.
			ackCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := p.msg.DoubleAck(ackCtx)
			cancel()
			if err != nil {
				// Not fatal: the raw message comes again and republishes under the same id.
				e.cfg.Logger.Warn("ack raw message", "err", err)
			}
		case err := <-p.ack.Err():
			e.cfg.Logger.Warn("publish to USAGE_ENRICHED failed; the raw message will be redelivered", "err", err)
			_ = p.msg.NakWithDelay(time.Second)
		case <-ctx.Done():
			return
		}
	}
}

// enrich decodes one raw batch and prices every row in place.
func (e *Enricher) enrich(m jetstream.Msg) ([]byte, int, error) {
	p, err := partitionOf(m.Subject())
	if err != nil {
		return nil, 0, err
	}
	if s := m.Headers().Get(stream.HeaderSchema); s != batch.SchemaName {
		return nil, 0, fmt.Errorf("payload schema %q is not %s", s, batch.SchemaName)
	}
	rows, err := batch.Decode(m.Data())
	if err != nil {
		return nil, 0, err
	}
	cat := e.catalog.Load()
	for i := range rows {
		r := &rows[i]
		q := cat.Price(r.Provider, r.Model, r.ServiceTier, r.Time, r.Tokens, r.CacheHit)
		r.Priced, r.ModelPriced, r.PriceVersion = q.Priced, q.Model, q.Version
		r.CostPico, r.SavingsPico = int64(q.Cost), int64(q.Savings)
		if !q.Priced {
			e.m.unpriced.WithLabelValues(r.Provider).Inc()
		}
	}
	out, err := batch.Encode(rows)
	if err != nil {
		return nil, 0, err
	}
	e.m.events.Add(float64(len(rows)))
	e.m.batches.Inc()
	return out, p, nil
}

func (e *Enricher) deadLetter(ctx context.Context, m jetstream.Msg, seq uint64, reason error) {
	e.m.dead.Inc()
	e.cfg.Logger.Error("quarantining raw message", "seq", seq, "err", reason)
	dm := &nats.Msg{Subject: stream.DeadSubject("enricher"), Data: m.Data(), Header: nats.Header{}}
	dm.Header.Set(stream.HeaderReason, reason.Error())
	dm.Header.Set(stream.HeaderSource, stream.Raw+"/"+strconv.FormatUint(seq, 10))
	dm.Header.Set(jetstream.MsgIDHeader, "dead-raw-"+strconv.FormatUint(seq, 10))
	if _, err := e.js.PublishMsg(ctx, dm); err != nil {
		// Keep the message: it is redelivered and quarantined again later.
		e.cfg.Logger.Warn("publish to USAGE_DEAD", "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	_ = m.Term()
}

func partitionOf(subject string) (int, error) {
	s, ok := strings.CutPrefix(subject, stream.RawPrefix)
	p, err := strconv.Atoi(s)
	if !ok || err != nil || p < 0 || p > 0xffff {
		return 0, fmt.Errorf("subject %q is not %s<partition>", subject, stream.RawPrefix)
	}
	return p, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
