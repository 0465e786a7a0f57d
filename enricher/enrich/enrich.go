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
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/enricher/attribute"
	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage"
	"github.com/tokenmeter/tokenmeter/stage/pull"
	"github.com/tokenmeter/tokenmeter/stage/reload"
)

// ConsumerName is the durable consumer all enrichers share on USAGE_RAW.
const ConsumerName = stream.EnricherConsumer

// publishTimeout bounds the wait for JetStream to acknowledge an enriched message.
const publishTimeout = 30 * time.Second

// Config configures the enricher.
type Config struct {
	// PricingDir holds the pricing files; empty means the catalogue shipped in the binary.
	PricingDir string
	// PricingPoll is how often PricingDir (and AttributionFile) is read for changes; a
	// changed directory is loaded and swapped in without a restart (see ReloadPricing).
	PricingPoll time.Duration
	// AttributionFile holds the attribution rules (package attribute); empty means events
	// keep the attribution they arrive with.
	AttributionFile string
	// EmitterBindingsFile holds the emitters' bindings (ParseBindings): the tags and teams
	// the events of each emitter identity (usage.raw.<p>.<name>) are charged to. Empty binds
	// nobody: emitters' events keep their tags, with the emitter tag naming the emitter.
	// Polled every PricingPoll like the attribution file.
	EmitterBindingsFile string
	// Workers is the number of concurrent fetch-price-publish loops.
	Workers int
	// FetchBatch is how many raw messages a worker fetches at once.
	FetchBatch int
	// MaxAhead is how many bytes USAGE_ENRICHED may hold, while the aggregators take from
	// it, before the workers wait for them rather than fetch more (see ahead): the backlog
	// then waits in USAGE_RAW. 0 is DefaultMaxAhead; negative never waits.
	MaxAhead int64
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
	if c.MaxAhead == 0 {
		c.MaxAhead = DefaultMaxAhead
	}
	if c.AckWait == 0 {
		c.AckWait = time.Minute
	}
	if c.PricingPoll == 0 {
		c.PricingPoll = 5 * time.Second
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
		errs = append(errs, fmt.Errorf("-workers (%d) must be at least 1", c.Workers))
	}
	if c.FetchBatch < 1 {
		errs = append(errs, fmt.Errorf("fetch batch (%d) must be at least 1", c.FetchBatch))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("-ack-wait (%s) must be at least 1s", c.AckWait))
	}
	if c.PricingPoll < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("-pricing-poll (%s) must be at least 10ms", c.PricingPoll))
	}
	if err := c.Streams.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Enricher is the running stage.
type Enricher struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	catalog atomic.Pointer[pricing.Catalog]
	rules   atomic.Pointer[attribute.Rules] // nil without an attribution file
	// bindings are the emitters' bindings; nil without a bindings file.
	bindings atomic.Pointer[Bindings]
	m        metrics

	// reloadMu serialises the reloads; the versions are the pricing directory's, the
	// attribution file's and the bindings file's content in force and last refused, so that
	// an unchanged one is not parsed again and a broken one is reported once, not at every
	// poll.
	reloadMu                    sync.Mutex
	pricingV, rulesV, bindingsV reload.Version
	// ahead holds the workers back while the aggregators are far behind; nil never does.
	ahead *ahead
	// turns orders the workers' acknowledgements.
	turns *turns
	// consumed holds the partitions of USAGE_ENRICHED known to have their aggregator's
	// consumer (stream.EnsurePartition), as map[int]struct{}.
	consumed sync.Map
}

type metrics struct {
	events       prometheus.Counter
	unpriced     *prometheus.CounterVec
	tierFallback *prometheus.CounterVec
	batches      prometheus.Counter
	dead         prometheus.Counter
	reloads      *prometheus.CounterVec
	reloadOK     prometheus.Gauge
	attributed   prometheus.Counter
	folded       *prometheus.CounterVec
	emitted      *prometheus.CounterVec
	overridden   *prometheus.CounterVec
	held         prometheus.Counter
}

// New loads the pricing catalogue and prepares the stage; it does not touch NATS yet.
func New(cfg Config, nc *nats.Conn) (*Enricher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enricher config: %w", err)
	}
	var cat *pricing.Catalog
	var sum string
	if cfg.PricingDir != "" {
		d, err := pricing.ReadDir(cfg.PricingDir)
		if err != nil {
			return nil, fmt.Errorf("load pricing catalogue: %w", err)
		}
		if cat, err = d.Catalog(); err != nil {
			return nil, fmt.Errorf("load pricing catalogue from %s: %w", cfg.PricingDir, err)
		}
		sum = d.Sum()
	} else {
		var err error
		if cat, err = pricing.Default(); err != nil {
			return nil, fmt.Errorf("load pricing catalogue: %w", err)
		}
	}
	// A publish whose acknowledgement never comes (a lost reply) must fail, so that its raw
	// message is handed back, rather than hold the worker for ever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	e := &Enricher{cfg: cfg, nc: nc, js: js, ahead: newAhead(cfg.MaxAhead, time.Now), turns: newTurns()}
	e.pricingV.Accept(sum)
	e.catalog.Store(cat)
	if cfg.AttributionFile != "" {
		data, err := os.ReadFile(cfg.AttributionFile)
		if err != nil {
			return nil, fmt.Errorf("load attribution rules: %w", err)
		}
		rules, err := attribute.Parse(cfg.AttributionFile, data)
		if err != nil {
			return nil, fmt.Errorf("load attribution rules: %w", err)
		}
		e.rules.Store(rules)
		e.rulesV.Accept(reload.Key(data))
	}
	if cfg.EmitterBindingsFile != "" {
		data, err := readBindingsFile(cfg.EmitterBindingsFile)
		if err != nil {
			return nil, fmt.Errorf("load emitter bindings: %w", err)
		}
		b, err := ParseBindings(data)
		if err != nil {
			return nil, fmt.Errorf("load emitter bindings %s: %w", cfg.EmitterBindingsFile, err)
		}
		e.bindings.Store(b)
		e.bindingsV.Accept(reload.Key(data))
	}
	e.m = metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_events_total", Help: "Events priced and published to USAGE_ENRICHED."}),
		unpriced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_unpriced_events_total",
			Help: "Events whose provider or model has no price; stored with priced = 0, never as $0."},
			[]string{"provider"}),
		tierFallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_tier_fallback_events_total",
			Help: "Events of the batch, flex or priority tier priced at standard prices because their model's price row has none for the tier; stored with tier_fallback = 1."},
			[]string{"provider", "tier"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_batches_total", Help: "Raw batches processed."}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_dead_letters_total", Help: "Raw messages quarantined in USAGE_DEAD."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_pricing_reloads_total",
			Help: "Changed pricing directories, attribution files and emitter bindings files loaded (result=ok) or refused, keeping what is in force (result=error)."},
			[]string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenmeter_enricher_pricing_reload_ok",
			Help: "1 when the pricing directory's current content is the catalogue in force, 0 while a broken change is refused."}),
		attributed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_attributed_events_total",
			Help: "Events whose team, feature, env, cost centre or owner the attribution rules normalised, filled or defaulted."}),
		folded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_tag_values_folded_total",
			Help: `Tag values turned into "other" because the tag reached its max_values cap (attribution rules).`},
			[]string{"tag"}),
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_emitter_events_total",
			Help: "Events published by an emitter identity (usage.raw.<p>.<name>), by whether -emitter-bindings binds the emitter (bound=true) or not."},
			[]string{"bound"}),
		overridden: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_emitter_team_overridden_total",
			Help: "Events of a bound emitter that named a team its binding may not charge, charged to the binding's team (or unallocated) instead."},
			[]string{"emitter"}),
		held: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_enricher_held_seconds_total",
			Help: "Time the enricher's workers waited because USAGE_ENRICHED held more than -max-ahead bytes while the aggregators were taking from it."}),
	}
	e.m.reloadOK.Set(1)
	for _, c := range []prometheus.Collector{e.m.events, e.m.unpriced, e.m.tierFallback, e.m.batches, e.m.dead, e.m.reloads, e.m.reloadOK, e.m.attributed, e.m.folded, e.m.emitted, e.m.overridden, e.m.held} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("register enricher metrics: %w", err)
		}
	}
	return e, nil
}

// Catalog returns the pricing catalogue in force.
func (e *Enricher) Catalog() *pricing.Catalog { return e.catalog.Load() }

// ReloadPricing reads the pricing directory and, when its content changed since the last
// load, builds a new catalogue and swaps it in. The swap is one atomic pointer store and every
// raw batch loads the pointer once, so each event is priced wholly with the old catalogue or
// wholly with the new one. A directory that does not load (a YAML error, an ambiguous name, a
// file removed mid-edit) is refused: the error is returned, logged once per distinct broken
// content, counted in tokenmeter_enricher_pricing_reloads_total{result="error"}, and the
// catalogue in force stays. changed reports whether a new catalogue was swapped in. Without a
// pricing directory it does nothing.
func (e *Enricher) ReloadPricing() (changed bool, err error) {
	if e.cfg.PricingDir == "" {
		return false, nil
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	d, err := pricing.ReadDir(e.cfg.PricingDir)
	key := d.Sum()
	var cat *pricing.Catalog
	if err != nil {
		key = reload.ErrorKey(err)
	} else {
		if e.pricingV.Check(key) == reload.Unchanged {
			e.m.reloadOK.Set(1)
			return false, nil
		}
		if cat, err = d.Catalog(); err != nil {
			err = fmt.Errorf("%s: %w", e.cfg.PricingDir, err)
		}
	}
	if err != nil {
		// A ReadDir error names the directory itself.
		err = fmt.Errorf("reload pricing catalogue (keeping version %s): %w", e.Catalog().Version(), err)
		e.m.reloadOK.Set(0)
		if e.pricingV.Check(key) == reload.Changed {
			e.m.reloads.WithLabelValues("error").Inc()
			e.cfg.Logger.Error("pricing change refused; the catalogue in force stays", "dir", e.cfg.PricingDir,
				"version", e.Catalog().Version(), "err", err)
			e.pricingV.Refuse(key)
		}
		return false, err
	}
	old := e.catalog.Swap(cat)
	e.pricingV.Accept(key)
	e.m.reloads.WithLabelValues("ok").Inc()
	e.m.reloadOK.Set(1)
	e.cfg.Logger.Info("pricing catalogue reloaded", "dir", e.cfg.PricingDir, "from", old.Version(), "to", cat.Version())
	return true, nil
}

// ReloadAttribution reads the attribution file and swaps in its rules when its content
// changed; a file that does not parse is refused like a broken pricing directory, and the
// rules in force stay. Without an attribution file it does nothing.
func (e *Enricher) ReloadAttribution() (changed bool, err error) {
	return e.reloadFile("attribution rules", e.cfg.AttributionFile, os.ReadFile, &e.rulesV, func(data []byte) error {
		rules, err := attribute.Parse(e.cfg.AttributionFile, data)
		if err == nil {
			e.rules.Store(rules)
		}
		return err
	})
}

// ReloadBindings reads the emitter bindings file and swaps in its bindings when its content
// changed; a file that does not parse is refused, and the bindings in force stay. Without a
// bindings file it does nothing.
func (e *Enricher) ReloadBindings() (changed bool, err error) {
	return e.reloadFile("emitter bindings", e.cfg.EmitterBindingsFile, readBindingsFile, &e.bindingsV, func(data []byte) error {
		b, err := ParseBindings(data)
		if err != nil {
			return fmt.Errorf("%s: %w", e.cfg.EmitterBindingsFile, err)
		}
		e.bindings.Store(b)
		return nil
	})
}

// reloadFile reads file with read and, when its content is not the one in force (v), has
// swap parse it and put it in force. A file that cannot be read or parsed is refused: the
// error is returned, logged and counted once per distinct content, and what is in force
// stays. Without a file it does nothing.
func (e *Enricher) reloadFile(what, file string, read func(string) ([]byte, error), v *reload.Version, swap func([]byte) error) (bool, error) {
	if file == "" {
		return false, nil
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	data, err := read(file)
	key := reload.Key(data)
	if err != nil {
		key = reload.ErrorKey(err)
	} else if v.Check(key) == reload.Unchanged {
		return false, nil
	} else {
		err = swap(data)
	}
	if err != nil {
		err = fmt.Errorf("reload %s (keeping those in force): %w", what, err)
		if v.Check(key) == reload.Changed {
			e.m.reloads.WithLabelValues("error").Inc()
			e.cfg.Logger.Error(what+" change refused; those in force stay", "file", file, "err", err)
			v.Refuse(key)
		}
		return false, err
	}
	v.Accept(key)
	e.m.reloads.WithLabelValues("ok").Inc()
	e.cfg.Logger.Info(what+" reloaded", "file", file)
	return true, nil
}

// readBindingsFile reads an emitter bindings file of at most MaxBindingsFileBytes.
func readBindingsFile(file string) ([]byte, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxBindingsFileBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", file, st.Size(), MaxBindingsFileBytes)
	}
	return os.ReadFile(file)
}

// watchPricing polls the pricing directory, the attribution file and the emitter bindings
// file until ctx is done.
func (e *Enricher) watchPricing(ctx context.Context) {
	// Each reload logs and counts its own outcome.
	reload.Poll(ctx, e.cfg.PricingPoll,
		func() { _, _ = e.ReloadPricing() }, func() { _, _ = e.ReloadAttribution() }, func() { _, _ = e.ReloadBindings() })
}

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
		FilterSubject: stream.RawSubjects,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", ConsumerName, stream.Raw, err)
	}
	e.cfg.Logger.Info("enricher running", "workers", e.cfg.Workers, "catalogue", e.Catalog().Version())
	if e.cfg.PricingDir != "" || e.cfg.AttributionFile != "" || e.cfg.EmitterBindingsFile != "" {
		go e.watchPricing(ctx)
	}
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
	var ws workspace
	// A batch is one message and what else is there when it comes: a lone message (a spike
	// the alerter must see) is priced as soon as it comes, while under load a batch still
	// brings FetchBatch messages.
	batches := pull.Batcher{Consumer: cons, Stream: stream.Raw, Log: e.cfg.Logger, MaxItems: e.cfg.FetchBatch}
	var msgs []jetstream.Msg
	// full is how long to wait before the next fetch after USAGE_ENRICHED refused a publish
	// for want of room: its messages come again after their delay anyway, and fetching the
	// next ones at once would price and refuse the whole backlog over and over.
	var full time.Duration
	for ctx.Err() == nil {
		if full > 0 {
			start := time.Now()
			stage.Sleep(ctx, full)
			e.m.held.Add(time.Since(start).Seconds())
		}
		e.m.held.Add(e.ahead.wait(ctx, e.js).Seconds())
		msgs = msgs[:0]
		e.turns.fetch.Lock()
		batches.Next(ctx, func(m jetstream.Msg) int {
			msgs = append(msgs, m)
			return 1
		})
		var tn turn
		if len(msgs) > 0 {
			tn = e.turns.take()
		}
		e.turns.fetch.Unlock()
		if len(msgs) > 0 {
			if e.process(ctx, msgs, &ws, tn) {
				full = min(max(2*full, 100*time.Millisecond), 2*time.Second)
			} else {
				full = 0
			}
		}
	}
	return nil
}

// process prices a fetched set of raw messages, publishes each result and acks the raw
// message only once JetStream has stored its enriched counterpart. The enriched message id is
// derived from the raw message's stream sequence, so a redelivered raw message republishes
// under the same id and JetStream stores it once (and the aggregator drops its events as
// duplicates should the redelivery come after the duplicate window).
//
// It acknowledges in its turn (see turns), and reports whether USAGE_ENRICHED refused a
// message because it is full.
func (e *Enricher) process(ctx context.Context, msgs []jetstream.Msg, ws *workspace, tn turn) (full bool) {
	defer tn.end()
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
		out, p, err := e.enrich(m, &ws.rows, ws.payload())
		if err != nil {
			e.deadLetter(ctx, m, meta.Sequence.Stream, err)
			continue
		}
		if err := e.ensurePartition(ctx, p); err != nil {
			e.cfg.Logger.Warn("the raw message will be redelivered", "err", err)
			_ = m.NakWithDelay(time.Second)
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
		e.ahead.sent(len(out))
		inflight = append(inflight, pending{m, f})
		ws.payloads = append(ws.payloads, out) // until its acknowledgement, the client may send it again
	}
	if !tn.wait(ctx) {
		ws.payloads = nil // the client may still hold the payloads in flight
		return full
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
			if !stream.IsFull(err) || !full { // a full stream is told once per batch
				e.cfg.Logger.Warn("publish to USAGE_ENRICHED failed; the raw message will be redelivered", "err", err)
			}
			full = full || stream.IsFull(err)
			_ = p.msg.NakWithDelay(time.Second)
		case <-ctx.Done():
			ws.payloads = nil // the client may still hold the payloads in flight
			return full
		}
	}
	// Every payload is stored or refused: the next fetch encodes into them again.
	ws.payloads = ws.payloads[:0]
	return full
}

// workspace is what a worker reuses from one fetch to the next: the rows of the message being
// priced, and the payloads of the previous fetch's enriched messages. A payload encoded into a
// fresh buffer cost an allocation of ~100 KiB per message, zeroed, and the garbage it left.
type workspace struct {
	rows     []batch.Row
	payloads [][]byte // past len: the buffers of the fetch before, free
}

// payload returns a free buffer for the next payload, empty.
func (ws *workspace) payload() []byte {
	if n := len(ws.payloads); n < cap(ws.payloads) {
		return ws.payloads[:n+1][n][:0]
	}
	return nil
}

// ensurePartition makes sure partition p of USAGE_ENRICHED has its aggregator's consumer
// before the first publish to it: under interest retention a message no consumer wants is
// dropped, and a collector or emitter may use more partitions than the stages were told of.
func (e *Enricher) ensurePartition(ctx context.Context, p int) error {
	if _, ok := e.consumed.Load(p); ok {
		return nil
	}
	if err := stream.EnsurePartition(ctx, e.js, p); err != nil {
		return err
	}
	e.consumed.Store(p, struct{}{})
	return nil
}

// enrich decodes one raw batch into scratch, binds the rows of an emitter's message to its
// binding (bind), attributes them, prices every row in place and appends the enriched
// payload to buf.
func (e *Enricher) enrich(m jetstream.Msg, scratch *[]batch.Row, buf []byte) ([]byte, int, error) {
	p, emitter, err := stream.ParseRawSubject(m.Subject())
	if err != nil {
		return nil, 0, err
	}
	if s := m.Headers().Get(stream.HeaderSchema); s != batch.SchemaName {
		return nil, 0, fmt.Errorf("payload schema %q is not %s", s, batch.SchemaName)
	}
	rows, err := batch.AppendDecoded((*scratch)[:0], m.Data())
	*scratch = rows
	if err != nil {
		return nil, 0, err
	}
	cat := e.catalog.Load() // once per batch: a reload never splits a batch between catalogues
	rules := e.rules.Load()
	bd, bound := e.bindings.Load().Lookup(emitter)
	if emitter != "" {
		e.m.emitted.WithLabelValues(strconv.FormatBool(bound)).Add(float64(len(rows)))
	}
	for i := range rows {
		r := &rows[i]
		// The binding first, as a collector API key's tags come before the rules: the rules
		// then normalise and default what the binding left.
		if bind(r, emitter, bd, bound) {
			e.m.overridden.WithLabelValues(emitter).Inc()
		}
		if rules != nil {
			res := rules.Apply(r)
			if res.Changed {
				e.m.attributed.Inc()
			}
			for _, tag := range res.Folded {
				e.m.folded.WithLabelValues(tag).Inc()
			}
		}
		q, units := cat.PriceUnits(r.Provider, r.Model, r.ServiceTier, r.Time, r.Tokens, r.EventUnits(), r.CacheHit)
		r.Priced, r.ModelPriced, r.PriceVersion = q.Priced, q.Model, q.Version
		r.CostPico, r.SavingsPico = int64(q.Cost), int64(q.Savings)
		setUnitCosts(r, units)
		if !q.Priced {
			e.m.unpriced.WithLabelValues(cat.ProviderLabel(r.Provider)).Inc()
		} else if r.TierFallback() {
			e.m.tierFallback.WithLabelValues(cat.ProviderLabel(r.Provider), r.ServiceTier).Inc()
		}
	}
	out, err := batch.AppendCompressed(buf, rows)
	if err != nil {
		return nil, 0, err
	}
	e.m.events.Add(float64(len(rows)))
	e.m.batches.Inc()
	return out, p, nil
}

// setUnitCosts records what each of r's units cost: units is PriceUnits' answer, sorted by
// key like r.Units, or nil when the event is unpriced (every unit then costs 0, as the event).
func setUnitCosts(r *batch.Row, units []pricing.UnitCost) {
	for i := range r.Units {
		r.Units[i].CostPico = 0
		if i < len(units) && units[i].Key == r.Units[i].Key {
			r.Units[i].CostPico = int64(units[i].Cost)
		}
	}
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
