// Package outcomes writes workflow outcomes — what POST /v1/outcomes took into JetStream's
// OUTCOMES stream — to ClickHouse's outcomes table, each outcome once.
//
// Why an outcome is never doubled. Every outcome carries a deterministic id (the client's own,
// or stream.OutcomeID of its workflow, outcome and time), so every copy of it — a client
// retry, a JetStream redelivery — has the same id. The writer is the single consumer of the
// durable Durable; for every batch it asks ClickHouse which of the batch's ids the table
// already holds and inserts only the others, then acks. A crash between the INSERT and the
// acks makes JetStream redeliver the batch, whose ids are then all found and nothing is
// inserted; an INSERT that failed after landing is resolved the same way on its retry.
//
// That leaves one window: two writers (two aggregator processes on the same durable) each
// holding a different copy of the same outcome at the same moment — possible only for a
// client retry that came after JetStream's duplicate window. For it the table is a
// ReplacingMergeTree ordered by (workflow_id, outcome_id), which folds the copies when it
// merges, and every analyst view (workflow_outcomes, workflow_results) groups by outcome_id,
// so what analysts read is exact at any moment, merged or not.
package outcomes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/chconfig"
	"github.com/tokenmeter/tokenmeter/stage/pull"
)

// Durable is the name of the writer's durable consumer of OUTCOMES.
const Durable = stream.OutcomesConsumer

// Defaults of the zero-valued Config fields.
const (
	DefaultClickHouseDSN = "clickhouse://127.0.0.1:9000"
	DefaultDatabase      = "tokenmeter"
	DefaultBatchMaxRows  = 10_000
	DefaultBatchMaxWait  = 200 * time.Millisecond
	DefaultAckWait       = 2 * time.Minute
)

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// writeTimeout bounds one look-up or INSERT; a write in flight at shutdown finishes
	// within it.
	writeTimeout = time.Minute
	ackTimeout   = 5 * time.Second
	// lookupChunk bounds the ids of one look-up query (max_query_size is 256 KiB).
	lookupChunk = 1000
)

// columns is the explicit column list of the INSERT, which ClickHouse 18 needs.
const columns = "outcome_id, workflow_id, outcome, time, time_ms, received_at, inserted_at"

// Config configures the writer. Zero fields take the defaults above (Registerer: a private
// registry; Logger: discard).
type Config struct {
	ClickHouseDSN string
	Database      string
	// A batch is written when it holds BatchMaxRows outcomes or BatchMaxWait after its first
	// message arrived.
	BatchMaxRows int
	BatchMaxWait time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering; it must be well
	// above the time of a write.
	AckWait    time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ClickHouseDSN == "" {
		c.ClickHouseDSN = DefaultClickHouseDSN
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.BatchMaxRows == 0 {
		c.BatchMaxRows = DefaultBatchMaxRows
	}
	if c.BatchMaxWait == 0 {
		c.BatchMaxWait = DefaultBatchMaxWait
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field of c (after defaults), naming its value.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, chconfig.Check(c.ClickHouseDSN, c.Database))
	if c.BatchMaxRows < 1 {
		errs = append(errs, fmt.Errorf("outcome batch max rows (%d) must be positive", c.BatchMaxRows))
	}
	if c.BatchMaxWait < time.Millisecond {
		errs = append(errs, fmt.Errorf("outcome batch max wait (%v) must be at least 1ms", c.BatchMaxWait))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("outcome ack wait (%v) must be at least 1s", c.AckWait))
	}
	return errors.Join(errs...)
}

// Writer is the outcome writer. Run it once.
type Writer struct {
	cfg     Config
	chOpts  *clickhouse.Options
	js      jetstream.JetStream
	log     *slog.Logger
	breaker *gobreaker.CircuitBreaker
	ready   atomic.Pointer[error]
	now     func() time.Time

	inserted, duplicates, poison prometheus.Counter

	// beforeAck, when set (by tests), runs after a batch is written and before its messages
	// are acked; an error stops Run there, as a crash would.
	beforeAck func() error
}

var errNotStarted = errors.New("outcome writer not started: its consumer is not ready yet")

// New validates cfg (after defaults) and registers the writer's metrics. It does not connect
// to ClickHouse; Run does.
func New(cfg Config, nc *nats.Conn) (*Writer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("outcome writer config: %w", err)
	}
	if nc == nil {
		return nil, errors.New("outcome writer: nil NATS connection")
	}
	opts, err := clickhouse.ParseDSN(cfg.ClickHouseDSN)
	if err != nil {
		return nil, fmt.Errorf("outcome writer config: ClickHouseDSN %q: %w", redact.DSN(cfg.ClickHouseDSN), redact.DSNError(err, cfg.ClickHouseDSN))
	}
	chcluster.WriteOptions(opts)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream context: %w", err)
	}
	w := &Writer{cfg: cfg, chOpts: opts, js: js, log: cfg.Logger, now: time.Now,
		inserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_outcomes_inserted_total",
			Help: "Outcomes inserted into the outcomes table.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_outcomes_duplicates_total",
			Help: "Outcomes not inserted because their id was already in ClickHouse or earlier in the batch.",
		}),
		poison: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_outcomes_dead_lettered_total",
			Help: "OUTCOMES messages that could not be decoded, sent to USAGE_DEAD.",
		}),
	}
	for _, m := range []prometheus.Collector{w.inserted, w.duplicates, w.poison} {
		if err := cfg.Registerer.Register(m); err != nil {
			return nil, fmt.Errorf("register outcome writer metrics: %w", err)
		}
	}
	w.setReady(errNotStarted)
	w.breaker = gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        "clickhouse-outcomes",
		Timeout:     5 * time.Second,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			w.log.Warn("ClickHouse circuit breaker of the outcome writer changed state", "from", from.String(), "to", to.String())
		},
	})
	return w, nil
}

func (w *Writer) setReady(err error) { w.ready.Store(&err) }

// Ready reports why the writer cannot write now, or nil.
func (w *Writer) Ready() error {
	if err := w.ready.Load(); err != nil && *err != nil {
		return *err
	}
	if w.breaker.State() == gobreaker.StateOpen {
		return errors.New("the outcome writer's ClickHouse circuit breaker is open")
	}
	return nil
}

// Run consumes OUTCOMES until ctx is done and writes every outcome to <Database>.outcomes.
// The table comes from the migrations that the aggregator applies (aggregate.Run); until it
// exists, writes fail and are retried. Run returns nil when ctx ends, or an error when it
// cannot go on.
func (w *Writer) Run(ctx context.Context) error {
	conn, err := clickhouse.Open(w.chOpts)
	if err != nil {
		return fmt.Errorf("open ClickHouse: %w", err)
	}
	defer conn.Close()

	var cons jetstream.Consumer
	err = w.retry(ctx, "create consumer "+Durable, func(ctx context.Context) error {
		// The stream is ensured by every stage at start-up (stream.Ensure); until it exists,
		// this fails and is retried.
		cons, err = w.js.CreateOrUpdateConsumer(ctx, stream.Outcomes, jetstream.ConsumerConfig{
			Durable:       Durable,
			Description:   "writes workflow outcomes to ClickHouse",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       w.cfg.AckWait,
			MaxAckPending: 10_000,
			MaxDeliver:    -1,
		})
		return err
	})
	if err != nil {
		return nil // ctx is done
	}
	w.setReady(nil)
	w.log.Info("outcome writer running", "database", w.cfg.Database)
	batches := &pull.Batcher{Consumer: cons, Stream: stream.Outcomes, Log: w.log,
		MaxItems: w.cfg.BatchMaxRows, MaxWait: w.cfg.BatchMaxWait}

	for ctx.Err() == nil {
		msgs, outs := w.fetch(ctx, batches)
		if len(msgs) == 0 {
			continue
		}
		if err := w.retry(ctx, "write outcomes to "+w.cfg.Database+".outcomes", func(context.Context) error {
			return w.write(conn, outs)
		}); err != nil {
			nakAll(msgs)
			return nil
		}
		if w.beforeAck != nil {
			if err := w.beforeAck(); err != nil {
				return err
			}
		}
		ackAll(msgs, w.log)
	}
	return nil
}

// fetch collects a batch: up to BatchMaxRows outcomes, or what came within BatchMaxWait of the
// first message; nothing when no message came within pull's idle wait. Undecodable messages
// are dead-lettered on the way. A batch cut short by shutdown is handed back to JetStream.
func (w *Writer) fetch(ctx context.Context, batches *pull.Batcher) ([]jetstream.Msg, []stream.Outcome) {
	var (
		msgs []jetstream.Msg
		outs []stream.Outcome
	)
	batches.Next(ctx, func(m jetstream.Msg) int {
		got, err := decode(m)
		if err != nil {
			w.deadLetter(m, err)
			return 0
		}
		msgs, outs = append(msgs, m), append(outs, got...)
		return len(got)
	})
	if ctx.Err() != nil {
		nakAll(msgs)
		return nil, nil
	}
	return msgs, outs
}

func decode(m jetstream.Msg) ([]stream.Outcome, error) {
	if s := m.Headers().Get(stream.HeaderSchema); s != stream.OutcomeSchema {
		return nil, fmt.Errorf("payload schema %q is not %q", s, stream.OutcomeSchema)
	}
	return stream.DecodeOutcomes(m.Data())
}

// write inserts the outcomes of outs whose ids ClickHouse does not hold yet, each once.
func (w *Writer) write(conn driver.Conn, outs []stream.Outcome) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	seen := make(map[string]bool, len(outs))
	ids := make([]string, 0, len(outs))
	for _, o := range outs {
		if !seen[o.ID] {
			seen[o.ID] = false
			ids = append(ids, o.ID)
		}
	}
	if err := w.existing(ctx, conn, ids, func(id string) { seen[id] = true }); err != nil {
		return err
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+w.cfg.Database+".outcomes ("+columns+")")
	if err != nil {
		return fmt.Errorf("prepare insert into %s.outcomes: %w", w.cfg.Database, err)
	}
	now := w.now().UTC()
	n := 0
	for _, o := range outs {
		if seen[o.ID] {
			continue
		}
		seen[o.ID] = true
		t := o.Time.UTC()
		if err := b.Append(o.ID, o.WorkflowID, o.Outcome, t.Truncate(time.Second),
			uint16(t.Nanosecond()/int(time.Millisecond)), o.ReceivedAt.UTC(), now); err != nil {
			_ = b.Abort()
			return fmt.Errorf("append outcome %q for %s.outcomes: %w", o.ID, w.cfg.Database, err)
		}
		n++
	}
	w.duplicates.Add(float64(len(outs) - n))
	if n == 0 {
		_ = b.Abort()
		return nil
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d outcomes into %s.outcomes: %w", n, w.cfg.Database, err)
	}
	w.inserted.Add(float64(n))
	return nil
}

// existing calls fn with each of ids that <db>.outcomes holds.
func (w *Writer) existing(ctx context.Context, conn driver.Conn, ids []string, fn func(string)) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), lookupChunk)]
		ids = ids[len(chunk):]
		// A GroupSet binds as a parenthesised list, which IN takes on ClickHouse 18.
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		for i, id := range chunk {
			set.Value[i] = id
		}
		rows, err := conn.Query(ctx, "SELECT DISTINCT outcome_id FROM "+w.cfg.Database+".outcomes WHERE outcome_id IN ?", set)
		if err != nil {
			return fmt.Errorf("look up %d outcome ids in %s.outcomes: %w", len(chunk), w.cfg.Database, err)
		}
		var id string
		for rows.Next() {
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("look up outcome ids in %s.outcomes: %w", w.cfg.Database, err)
			}
			fn(id)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("look up outcome ids in %s.outcomes: %w", w.cfg.Database, err)
		}
	}
	return nil
}

// deadLetter publishes m to USAGE_DEAD with the reason and acks it; when the publish fails, m
// stays unacked and comes back after AckWait.
func (w *Writer) deadLetter(m jetstream.Msg, reason error) {
	source := stream.Outcomes
	if md, err := m.Metadata(); err == nil {
		source += "/" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	dead := nats.NewMsg(stream.DeadSubject("outcomes"))
	dead.Data = m.Data()
	dead.Header.Set(stream.HeaderReason, reason.Error())
	dead.Header.Set(stream.HeaderSource, source)
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if _, err := w.js.PublishMsg(ctx, dead, jetstream.WithMsgID("outcomes:"+source)); err != nil {
		w.log.Error("cannot dead-letter an undecodable outcomes message; it will be redelivered", "source", source, "reason", reason, "err", err)
		return
	}
	w.poison.Inc()
	w.log.Warn("dead-lettered an undecodable outcomes message", "source", source, "reason", reason)
	if err := m.DoubleAck(ctx); err != nil {
		w.log.Warn("ack a dead-lettered outcomes message", "source", source, "err", err)
	}
}

// retry calls fn through the breaker until it succeeds or ctx is done, backing off
// exponentially; the writer is not ready while it fails.
func (w *Writer) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	backoff := minBackoff
	for {
		_, err := w.breaker.Execute(func() (any, error) { return nil, fn(ctx) })
		if err == nil {
			w.setReady(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("%s: %w", what, err)
		w.setReady(err)
		w.log.Warn("retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func ackAll(msgs []jetstream.Msg, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	for _, m := range msgs {
		if err := m.DoubleAck(ctx); err != nil {
			// The outcomes are written; a redelivery finds their ids and inserts nothing.
			log.Warn("ack an outcomes message", "err", err)
		}
	}
}

func nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}
