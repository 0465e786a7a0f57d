// Package alerting is the alerter stage: it reads USAGE_ENRICHED's batches (feed.go: live,
// and from their copies in USAGE_HISTORY what it did not read live), keeps per-group
// windows in memory (history from ClickHouse at start), evaluates the rules and budgets
// every second, drives each alert's state machine, records every transition in ClickHouse
// (alert_history) and in the KV bucket tokenmeter_alerts, and hands firing and resolved
// alerts to the dispatcher, which notifies the receivers.
//
// Start-up is exact: the newest Replay of the history is read again, and everything older
// comes from spend_1m, split at one cutoff minute by event time, so no event is counted
// twice or missed — except events that the aggregator had not yet written when the alerter
// started and whose time is before the cutoff, which are rare and only make a baseline
// slightly low.
package alerting

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/alerter/alert"
	"github.com/tokenmeter/tokenmeter/alerter/budget"
	"github.com/tokenmeter/tokenmeter/alerter/detect"
	"github.com/tokenmeter/tokenmeter/alerter/dispatch"
	"github.com/tokenmeter/tokenmeter/alerter/history"
	"github.com/tokenmeter/tokenmeter/alerter/notify"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/runaway"
	"github.com/tokenmeter/tokenmeter/alerter/silence"
	"github.com/tokenmeter/tokenmeter/alerter/state"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/reload"
)

// Alerter is the running stage.
type Alerter struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	chOpts *clickhouse.Options
	m      metrics

	ready atomic.Bool
	// decodeMu guards scratch, the rows of the message being counted, kept from one message
	// to the next so that decoding does not allocate them anew each time. No row outlives
	// add: the engine and the tracker keep only strings, which batch.AppendDecoded copies out
	// of the payload. Taken before mu.
	decodeMu sync.Mutex
	scratch  []batch.Row
	// counted is the ids and responses counted lately, so that copies count once (seen.go);
	// decodeMu guards it too.
	counted *seen
	// fresh tells Run that new events were counted (Run evaluates soon after).
	fresh chan struct{}
	// persistMu orders the writes of alert states to the KV bucket (persist).
	persistMu sync.Mutex
	// mu guards everything below; the consumer callback, the evaluation loop and the
	// dispatcher's OnSent all take it.
	mu   sync.Mutex
	file *rules.File
	// fileV is the rules file's content in force and the one last refused.
	fileV   reload.Version
	engine  *detect.Engine
	tracker *budget.Tracker
	alerts  map[string]*tracked
	disp    *dispatch.Dispatcher
	store   *state.Store
	budgets *budget.Publisher
	// silences holds the silences made at run time (tokenmeter silence, the API); runtime
	// is their last value seen, which the dispatcher gets beside the rules file's.
	silences atomic.Pointer[silence.Store]
	runtime  []rules.Silence
	// drifts are billing_drift's latest figures (RefreshDrift).
	drifts []drift
	// flows are the workflows' running costs for the runaway rules, baselines their
	// features' usual cost per workflow by the rules' days (RefreshRunaway), and caps the
	// workflow caps published for firing runaway alerts with cap, by bucket key.
	flows     *runaway.Flows
	baselines map[int]map[string]runaway.Baseline
	caps      map[string]kv.Budget
	hist      *history.Writer
	ch        driver.Conn
	started   time.Time
	cutoff    time.Time
	// stopFeed stops the feed started by Start and waits for it.
	stopFeed  func()
	dirty     map[string]bool // alerts whose KV record must be written
	lastBudgt map[string]budget.Status

	// baselinesTo is the day up to which the runaway baselines were read.
	baselinesTo time.Time
}

// tracked is one alert and what it came from.
type tracked struct {
	a        alert.Alert
	subj     subject
	notified map[string]dispatch.Sent
	window   string
	contrib  []string
	causes   []string
}

// subject is what an alert is about: a rule or a budget cap.
type subject struct {
	name, severity, description string
	keepFiringFor               time.Duration
	// window names the span the value covers, for caps ("period" when empty).
	window  string
	money   bool
	measure string
}

type metrics struct {
	events, late, duplicates, reloadFailures, missed prometheus.Counter
	catchUps                                         *prometheus.CounterVec
	alerts                                           *prometheus.GaugeVec
	notifications                                    *prometheus.CounterVec
	groups, historyOnly                              prometheus.Gauge
	evalSeconds                                      prometheus.Histogram
	// refused and evicted read the engine's counts (detect.Engine.Refused, Evicted).
	refused, evicted prometheus.CounterFunc
}

// New reads the rules file and prepares the stage; Run connects to ClickHouse and NATS.
func New(cfg Config, nc *nats.Conn) (*Alerter, error) {
	cfg = cfg.WithDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := migrate.ValidDatabase(cfg.Database); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("alerter config: %w", err)
	}
	if nc == nil {
		return nil, errors.New("new alerter: the NATS connection is nil")
	}
	opts, _ := clickhouse.ParseDSN(cfg.ClickHouseDSN)
	chcluster.WriteOptions(opts)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	a := &Alerter{cfg: cfg, nc: nc, js: js, chOpts: opts, alerts: map[string]*tracked{}, dirty: map[string]bool{}, counted: newSeen(cfg.Now, cfg.SeenMaxBytes), fresh: make(chan struct{}, 1)}
	f, data, err := a.readRules()
	if err != nil {
		return nil, err
	}
	a.file = f
	a.fileV.Accept(reload.Key(data))
	a.engine = detect.New(f.Rules, nil)
	a.engine.Lateness = cfg.Lateness
	a.tracker = budget.NewTracker(f.Budgets, nil)
	a.flows = runaway.NewFlows(runawayKeep(f.Runaways))
	if err := a.registerMetrics(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Alerter) registerMetrics() error {
	a.m = metrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_alerter_events_total", Help: "Enriched events read from USAGE_ENRICHED."}),
		late: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_alerter_late_events_total",
			Help: "Events older than every window bucket of a rule; they count in ClickHouse but not in that rule."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_alerter_duplicate_events_total",
			Help: "Events not counted because their id, or another report of their provider response, was counted lately (2 minutes, shorter past -seen-max-bytes)."}),
		reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_alerter_reload_failures_total",
			Help: "Rules files refused on reload (the previous rules stay in force)."}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_alerter_batches_missed_total",
			Help: "Enriched batches the alerter never counted: it had to read them from USAGE_HISTORY, which no longer held them."}),
		catchUps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokenmeter_alerter_catchups_total",
			Help: "Times the alerter read USAGE_HISTORY for what its live consumer did not deliver: at start-up, after falling behind, after losing the consumer."}, []string{"reason"}),
		historyOnly: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tokenmeter_alerter_history_only",
			Help: "1 while the server refuses the alerter its live consumer on USAGE_ENRICHED (an identity without the grant): it reads USAGE_HISTORY instead, which costs the server more."}),
		alerts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tokenmeter_alerter_alerts", Help: "Alerts by state."}, []string{"state"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tokenmeter_alerter_notifications_total",
			Help: "Notifications accepted by a receiver."}, []string{"receiver", "status"}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tokenmeter_alerter_groups", Help: "Groups held in memory over all rules."}),
		evalSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tokenmeter_alerter_evaluation_seconds",
			Help: "Time to evaluate every rule and budget once.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
	}
	engineCount := func(f func(*detect.Engine) int64) func() float64 {
		return func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return float64(f(a.engine))
		}
	}
	a.m.refused = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tokenmeter_alerter_groups_refused_total",
		Help: "Rows a rule did not count because they would have opened a group past its cap (detect.DefaultMaxGroups per rule)."},
		engineCount(func(e *detect.Engine) int64 { return e.Refused }))
	a.m.evicted = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tokenmeter_alerter_groups_evicted_total",
		Help: "Groups dropped because no data of theirs was left in their rule's buckets."},
		engineCount(func(e *detect.Engine) int64 { return e.Evicted }))
	flowCount := func(f func(*runaway.Flows) float64) func() float64 {
		return func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return f(a.flows)
		}
	}
	workflows := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tokenmeter_alerter_runaway_workflows",
		Help: "Workflows whose running cost the runaway rules hold."}, flowCount(func(f *runaway.Flows) float64 { return float64(f.Len()) }))
	workflowsRefused := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tokenmeter_alerter_runaway_workflows_refused_total",
		Help: "Events of workflows the runaway rules did not count because they already held runaway.DefaultMaxFlows workflows."},
		flowCount(func(f *runaway.Flows) float64 { return float64(f.Refused) }))
	for _, c := range []prometheus.Collector{a.m.events, a.m.late, a.m.duplicates, a.m.reloadFailures, a.m.alerts, a.m.notifications, a.m.groups, a.m.evalSeconds, a.m.refused, a.m.evicted,
		a.m.missed, a.m.catchUps, a.m.historyOnly, workflows, workflowsRefused} {
		if err := a.cfg.Registerer.Register(c); err != nil {
			return fmt.Errorf("register alerter metrics: %w", err)
		}
	}
	return nil
}

func (a *Alerter) readRules() (*rules.File, []byte, error) {
	if a.cfg.RulesFile == "" {
		f, err := rules.Parse("built-in rules", nil)
		return f, nil, err
	}
	data, err := os.ReadFile(a.cfg.RulesFile)
	if err != nil {
		return nil, nil, fmt.Errorf("read rules file: %w", err)
	}
	f, err := rules.Parse(a.cfg.RulesFile, data)
	if err != nil {
		return nil, nil, err
	}
	return f, data, nil
}

// Ready reports whether the alerter evaluates live data.
func (a *Alerter) Ready() error {
	if !a.nc.IsConnected() {
		return fmt.Errorf("alerter: NATS is %s", a.nc.Status())
	}
	if !a.ready.Load() {
		return errors.New("alerter: loading history and alert state")
	}
	return nil
}

// Run starts the stage and runs it until ctx is done.
// ClickHouse or NATS being unreachable at start-up does not stop it: it stays not ready and
// tries again every 5 seconds, like the aggregator waits for ClickHouse.
func (a *Alerter) Run(ctx context.Context) error {
	for {
		err := a.Start(ctx)
		if err == nil {
			break
		}
		a.Stop()
		if ctx.Err() != nil {
			return nil
		}
		a.cfg.Logger.Error("alerter cannot start yet; retrying in 5s", "err", err)
		t := time.NewTimer(5 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	defer a.Stop()
	eval := time.NewTicker(a.cfg.EvalInterval)
	defer eval.Stop()
	// flush wakes the dispatcher when a group's send time falls between two evaluations, so
	// a page leaves at group_wait, not up to an evaluation interval later.
	flush := time.NewTimer(time.Hour)
	defer flush.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	var lastTick time.Time
	armFlush := func() {
		a.mu.Lock()
		next := a.disp.NextFlush()
		a.mu.Unlock()
		flush.Stop()
		if next.IsZero() {
			return
		}
		if d := next.Sub(a.cfg.Now()); d < a.cfg.EvalInterval {
			flush.Reset(max(d, 10*time.Millisecond))
		}
	}
	go a.refreshDrifts(ctx)
	rulesPoll := time.NewTicker(a.cfg.ReloadInterval)
	defer rulesPoll.Stop()
	for {
		select {
		case <-ctx.Done():
			a.disp.Wait()
			a.flushHistory(context.Background())
			return nil
		case <-eval.C:
			a.Tick(ctx)
			lastTick = time.Now()
			armFlush()
		case <-a.fresh:
			// New events: evaluate now rather than at the next tick, so that a spike fires
			// within a fraction of a second, but at most every minEvalGap under steady traffic.
			if d := minEvalGap - time.Since(lastTick); d > 0 {
				soon.Reset(d)
				continue
			}
			a.Tick(ctx)
			lastTick = time.Now()
			armFlush()
		case <-soon.C:
			a.Tick(ctx)
			lastTick = time.Now()
			armFlush()
		case <-flush.C:
			a.mu.Lock()
			disp := a.disp
			a.mu.Unlock()
			disp.Flush(ctx)
			armFlush()
		case <-rulesPoll.C:
			if err := a.Reload(ctx); err != nil {
				a.cfg.Logger.Error("rules file refused; the previous rules stay in force", "file", a.cfg.RulesFile, "err", err)
			}
		}
	}
}

// Start connects, restores alert state, loads history and starts consuming. Tests call it
// and then drive Tick themselves.
func (a *Alerter) Start(ctx context.Context) error {
	if err := stream.Ensure(ctx, a.js, a.cfg.Streams); err != nil {
		return err
	}
	conn, err := clickhouse.Open(a.chOpts)
	if err != nil {
		return fmt.Errorf("open ClickHouse: %w", err)
	}
	a.ch = conn
	if err := a.migrate(ctx, conn); err != nil {
		return err
	}
	a.hist = history.New(conn, a.cfg.Database)
	if a.store, err = state.Open(ctx, a.js, a.cfg.Streams.Storage); err != nil {
		return err
	}
	if a.budgets, err = budget.OpenPublisher(ctx, a.js, a.cfg.Streams.Storage); err != nil {
		return err
	}
	if err := a.budgets.Prune(ctx, a.tracker.Budgets()); err != nil {
		return err
	}
	a.disp = a.newDispatcher(a.file)
	if err := a.restore(ctx); err != nil {
		return err
	}
	ss, err := silence.Open(ctx, a.js, a.cfg.Streams.Storage, a.cfg.Now)
	if err != nil {
		return err
	}
	if err := ss.Watch(ctx, a.setRuntimeSilences); err != nil {
		return err
	}
	a.silences.Store(ss)
	now := a.cfg.Now()
	a.started = now
	a.cutoff = now.Truncate(time.Minute).Add(-a.cfg.Replay)
	if err := backfill(ctx, conn, a.cfg.Database, a.engine, a.engine.Rules(), a.cutoff); err != nil {
		return err
	}
	if err := backfillBudgets(ctx, conn, a.cfg.Database, a.tracker, a.tracker.Budgets(), a.cutoff); err != nil {
		return err
	}
	flows := runaway.NewFlows(a.flows.Keep)
	flows.Refused = a.flows.Refused
	if err := backfillFlows(ctx, conn, a.cfg.Database, flows, flows.Keep, a.cutoff); err != nil {
		return err
	}
	a.mu.Lock()
	a.flows = flows
	a.mu.Unlock()
	if err := a.consume(ctx); err != nil {
		return err
	}
	a.ready.Store(true)
	a.cfg.Logger.Info("alerter running", "rules", len(a.file.Rules), "budgets", len(a.file.Budgets),
		"receivers", len(a.file.Receivers), "alerts restored", len(a.alerts), "cutoff", a.cutoff)
	return nil
}

// migrate applies the schema. The aggregator applies the same migrations, maybe at the
// same moment (single-process mode); the loser of such a race fails with "already exists"
// and simply tries again once the winner has recorded its migration.
func (a *Alerter) migrate(ctx context.Context, conn driver.Conn) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if _, err = migrate.Apply(ctx, conn, a.cfg.Database); err == nil {
			return nil
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return fmt.Errorf("migrate ClickHouse: %w", err)
}

// Stop stops the feed, which deletes its live consumer, and releases ClickHouse.
func (a *Alerter) Stop() {
	if a.stopFeed != nil {
		a.stopFeed()
		a.stopFeed = nil
	}
	if a.ch != nil {
		_ = a.ch.Close()
		a.ch = nil
	}
}

// consume starts the feed (feed.go) from the cutoff, minus the largest clock skew an event
// may have. It deletes the consumer on USAGE_HISTORY that alerters before the live
// consumer read.
func (a *Alerter) consume(ctx context.Context) error {
	if err := a.js.DeleteConsumer(ctx, stream.History, stream.AlerterConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete the old consumer %s on %s: %w", stream.AlerterConsumer, stream.History, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.runFeed(ctx, a.cutoff.Add(-10*time.Minute))
	}()
	a.stopFeed = func() {
		cancel()
		<-done
	}
	return nil
}

// add counts the events of one encoded batch. replayed, for a batch stored before start-up,
// drops the events before the cutoff (they came from ClickHouse); a newer batch counts
// every event, late ones included.
func (a *Alerter) add(data []byte, replayed bool) error {
	a.decodeMu.Lock()
	defer a.decodeMu.Unlock()
	rows, err := batch.AppendDecoded(a.scratch[:0], data)
	if err != nil {
		return err
	}
	a.scratch = rows
	a.mu.Lock()
	n, dups := 0, 0
	late := a.engine.Late
	now := a.cfg.Now()
	a.counted.prepare(rows)
	for i := range rows {
		r := &rows[i]
		if replayed && r.Time.Before(a.cutoff) {
			continue
		}
		if a.counted.duplicate(i, r, now) {
			dups++
			continue
		}
		a.engine.Add(r)
		a.tracker.Add(r)
		if a.flows.Keep > 0 {
			a.flows.Add(r.WorkflowID, r.Feature, r.Time, r.CostPico)
		}
		n++
	}
	a.m.late.Add(float64(a.engine.Late - late))
	a.mu.Unlock()
	a.m.events.Add(float64(n))
	if n > 0 && !replayed {
		select {
		case a.fresh <- struct{}{}:
		default: // an evaluation is already due
		}
	}
	a.m.duplicates.Add(float64(dups))
	return nil
}

// newDispatcher builds the receivers of f.
func (a *Alerter) newDispatcher(f *rules.File) *dispatch.Dispatcher {
	var rs []dispatch.Receiver
	for _, r := range f.Receivers {
		d := dispatch.Receiver{Name: r.Name, Match: r.Match}
		switch {
		case r.Webhook != nil:
			d.Notifier = &notify.Webhook{URL: r.Webhook.URL, BearerToken: r.Webhook.BearerToken, Client: a.cfg.HTTPClient}
		case r.Slack != nil:
			d.Notifier = &notify.Slack{URL: r.Slack.URL, Channel: r.Slack.Channel, Client: a.cfg.HTTPClient}
		case r.PagerDuty != nil:
			d.Notifier = &notify.PagerDuty{URL: r.PagerDuty.URL, RoutingKey: r.PagerDuty.RoutingKey, Client: a.cfg.HTTPClient}
		case r.Alertmanager != nil:
			d.Notifier = &notify.Alertmanager{URL: r.Alertmanager.URL, Client: a.cfg.HTTPClient}
		}
		rs = append(rs, d)
	}
	return dispatch.New(dispatch.Config{
		Route: f.Route, Receivers: rs, Silences: f.Silences, InhibitRules: f.InhibitRules, ExternalURL: f.LinkURL,
		OnSent: a.onSent, Now: a.cfg.Now, Logger: a.cfg.Logger,
	})
}

// onSent records what a receiver was told and writes it to the KV bucket at once: the
// window in which a crash can cause a repeated page is one KV write long.
func (a *Alerter) onSent(receiver string, alerts []notify.Alert, at time.Time) {
	var writes []string
	a.mu.Lock()
	for _, n := range alerts {
		a.m.notifications.WithLabelValues(receiver, n.Status).Inc()
		t := a.alerts[n.Fingerprint]
		if t == nil {
			continue
		}
		if t.notified == nil {
			t.notified = map[string]dispatch.Sent{}
		}
		t.notified[receiver] = dispatch.Sent{Status: n.Status, At: at}
		writes = append(writes, n.Fingerprint)
	}
	a.mu.Unlock()
	a.persist(context.Background(), writes, nil)
}

// restore reads the alerts of the KV bucket back into memory and into the dispatcher, with
// what each receiver was told.
func (a *Alerter) restore(ctx context.Context) error {
	recs, err := a.store.Load(ctx)
	if err != nil {
		return err
	}
	for fp, r := range recs {
		subj := a.subjectOf(r.Rule)
		t := &tracked{subj: subj, notified: r.Notified, a: alert.Alert{
			Fingerprint: fp, Rule: r.Rule, Labels: r.Labels, State: alert.State(r.State), Since: r.Since,
			ActiveAt: r.ActiveAt, FiredAt: r.FiredAt, ClearedSince: r.ClearedSince, Summary: r.Summary, Updated: r.Updated,
		}}
		t.a.Value, _ = parseAmount(r.Value, subj.money)
		t.a.Level, _ = parseAmount(r.Level, subj.money)
		t.a.Baseline, _ = parseAmount(r.Baseline, subj.money)
		a.alerts[fp] = t
		if t.a.State == alert.Firing || t.a.State == alert.Resolved {
			a.disp.Restore(a.notification(t), r.Notified)
		}
	}
	return nil
}

// subjectOf finds the rule or budget cap an alert name stands for.
func (a *Alerter) subjectOf(name string) subject {
	for _, r := range a.engine.Rules() {
		if r.Name == name {
			return ruleSubject(r)
		}
	}
	if r := a.runawayRule(name); r != nil {
		return runawaySubject(r)
	}
	return subject{name: name, severity: "warning", money: true, measure: string(rules.Cost)}
}

func ruleSubject(r *rules.Rule) subject {
	return subject{name: r.Name, severity: r.Severity, description: r.Description, keepFiringFor: r.KeepFiringFor,
		money: r.Measure.Money(), measure: string(r.Measure)}
}

// Reload re-reads the rules file when its content changed; a file that does not parse or
// validate is refused (reported once, not at every poll) and the rules in force stay. Rules whose windows did not change keep their data; new ones load
// their history from ClickHouse.
func (a *Alerter) Reload(ctx context.Context) error {
	if a.cfg.RulesFile == "" {
		return nil
	}
	data, err := os.ReadFile(a.cfg.RulesFile)
	key := reload.Key(data)
	if err != nil {
		key = reload.ErrorKey(err)
	}
	// The content in force, or a broken one already reported: nothing to do.
	if a.fileV.Check(key) != reload.Changed {
		return nil
	}
	if err != nil {
		a.m.reloadFailures.Inc()
		a.fileV.Refuse(key)
		return fmt.Errorf("read rules file: %w", err)
	}
	f, err := rules.Parse(a.cfg.RulesFile, data)
	if err != nil {
		a.m.reloadFailures.Inc()
		a.fileV.Refuse(key)
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.engine
	e := detect.New(f.Rules, old)
	var fresh []*rules.Rule
	for _, r := range e.Rules() {
		if !e.Kept(r.Name) {
			fresh = append(fresh, r)
		}
	}
	tr := budget.NewTracker(f.Budgets, a.tracker)
	var freshBudgets []*rules.Budget
	for _, b := range tr.Budgets() {
		if !tr.Kept(b.Name) {
			freshBudgets = append(freshBudgets, b)
		}
	}
	now := a.cfg.Now()
	if a.ch != nil {
		if err := backfill(ctx, a.ch, a.cfg.Database, e, fresh, now); err != nil {
			a.m.reloadFailures.Inc()
			return fmt.Errorf("load history for the new rules: %w", err)
		}
		if err := backfillBudgets(ctx, a.ch, a.cfg.Database, tr, freshBudgets, now); err != nil {
			a.m.reloadFailures.Inc()
			return fmt.Errorf("load history for the new budgets: %w", err)
		}
	}
	flows := a.flows
	if keep := runawayKeep(f.Runaways); keep > flows.Keep {
		// A longer window than the workflows held: load them again over the new one.
		flows = runaway.NewFlows(keep)
		flows.Refused = a.flows.Refused
		if a.ch != nil {
			if err := backfillFlows(ctx, a.ch, a.cfg.Database, flows, keep, now); err != nil {
				a.m.reloadFailures.Inc()
				return fmt.Errorf("load workflow costs for the runaway rules: %w", err)
			}
		}
	} else {
		flows.Keep = keep
	}
	a.flows = flows
	if !slices.EqualFunc(a.file.Runaways, f.Runaways, func(x, y rules.Runaway) bool { return x.Days == y.Days }) {
		// Runaway rules of other days need other baselines: read them now, not in 5 minutes.
		go a.refreshRunaway(ctx)
	}
	if a.budgets != nil {
		if err := a.budgets.Prune(ctx, tr.Budgets()); err != nil {
			a.cfg.Logger.Warn("prune removed budgets", "err", err)
		}
	}
	if !reflect.DeepEqual(f.Receivers, a.file.Receivers) || !reflect.DeepEqual(f.Route, a.file.Route) || f.LinkURL != a.file.LinkURL {
		// Sends of the old dispatcher still in flight report through onSent as usual.
		a.disp = a.newDispatcher(f)
		for _, t := range a.alerts {
			if t.a.State == alert.Firing || t.a.State == alert.Resolved {
				a.disp.Restore(a.notification(t), t.notified)
			}
		}
	} else {
		a.disp.SetInhibitRules(f.InhibitRules)
	}
	a.disp.SetSilences(slices.Concat(f.Silences, a.runtime))
	e.Lateness = a.cfg.Lateness
	a.engine, a.tracker, a.file = e, tr, f
	a.fileV.Accept(key)
	a.cfg.Logger.Info("rules reloaded", "file", a.cfg.RulesFile, "rules", len(f.Rules), "new rules", len(fresh), "budgets", len(f.Budgets))
	return nil
}

// minEvalGap is the shortest time between two evaluations that new events bring forward.
const minEvalGap = 250 * time.Millisecond

// refreshDrifts reads billing_drift's figures at once and every DriftInterval until ctx ends.
func (a *Alerter) refreshDrifts(ctx context.Context) {
	t := time.NewTicker(DriftInterval)
	defer t.Stop()
	for {
		if err := a.RefreshDrift(ctx); err != nil && ctx.Err() == nil {
			a.cfg.Logger.Warn("billing_drift: read the reconciliation; the previous figures stay", "err", err)
		}
		a.refreshRunaway(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setRuntimeSilences hands the silences made at run time to the dispatcher, beside the rules
// file's.
func (a *Alerter) setRuntimeSilences(all []silence.Silence) {
	rs := make([]rules.Silence, len(all))
	for i, s := range all {
		rs[i] = rules.Silence{Matchers: s.Matchers, StartsAt: s.StartsAt, EndsAt: s.EndsAt, Comment: s.Comment}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runtime = rs
	a.disp.SetSilences(slices.Concat(a.file.Silences, rs))
}

// SilenceHandler serves the Alertmanager API v2 for silences (silence.Handler, with
// Config.SilenceToken) once the alerter has started; before that it answers 503.
func (a *Alerter) SilenceHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss := a.silences.Load()
		if ss == nil {
			http.Error(w, `"the alerter is starting"`, http.StatusServiceUnavailable)
			return
		}
		silence.Handler(ss, a.cfg.SilenceToken).ServeHTTP(w, r)
	})
}

// Rules returns the rules file in force.
func (a *Alerter) Rules() *rules.File {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.file
}
