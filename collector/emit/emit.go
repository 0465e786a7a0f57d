// Package emit is the library that services use to publish usage events straight to
// JetStream's USAGE_RAW, without going through the collector's HTTP API.
//
// Emit never blocks the caller: events go into a bounded buffer, and a background goroutine
// groups them per partition into batches, encodes every batch once and publishes it with a
// message id derived from its bytes, through a circuit breaker. A batch that is not
// acknowledged is published again — the very same bytes, so the same message id and the same
// event ids — until JetStream acknowledges it, so an outage costs latency, not events.
//
// Without a spool (Options.SpoolDir empty) unacknowledged batches wait in memory, and when
// MaxBuffered events wait, Emit refuses more with ErrBufferFull instead of dropping silently.
//
// With a spool, a batch that is not acknowledged — NATS unreachable, JetStream not answering,
// or the stream refusing it because it is full (DiscardNew) — is written to the on-disk spool
// at once, and leaves memory. While the breaker is open, new batches go straight to the
// spool. Once publishing works again the spool is replayed oldest segment first, each message
// with its original bytes and Nats-Msg-Id, and a segment is deleted only after JetStream
// acknowledged every message in it. A crash between the acknowledgement and the deletion
// publishes a segment again: JetStream's duplicate window drops the copies it still
// remembers, and the aggregator counts every event id once whatever arrives later.
//
// The spool is bounded by SpoolMaxBytes. When it is full, batches that cannot be published
// stay in memory and are retried from there; once MaxBuffered events wait, Emit refuses new
// ones with ErrSpoolFull (which is also an ErrBufferFull), counted in Stats().SpoolFull and
// tokenmeter_emit_spool_full_total, and tokenmeter_emit_spool_full reads 1. Nothing is
// dropped without the caller being told.
//
// Close flushes: it publishes what is buffered and replays the spool while publishing
// works. What cannot be published before its context ends is left in the spool — past
// SpoolMaxBytes if need be, by at most the in-memory buffer — and a new Emitter on the same
// directory replays it.
package emit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
	"github.com/tokenmeter/tokenmeter/collector/internal/spool"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// ErrBufferFull is returned by Emit when MaxBuffered events are waiting for JetStream's
// acknowledgement: the event is not taken, and the caller decides whether to drop it, spool
// it or slow down. Every such event is counted in Stats().Dropped.
var ErrBufferFull = errors.New("emitter buffer is full")

// ErrSpoolFull is returned by Emit when the spool is full and MaxBuffered events wait in
// memory: the event is not taken. errors.Is(err, ErrBufferFull) holds for it too. Every such
// event is counted in Stats().SpoolFull and Stats().Dropped.
var ErrSpoolFull = fmt.Errorf("emitter spool is full: %w", ErrBufferFull)

// ErrClosed is returned by Emit after Close was called.
var ErrClosed = errors.New("emitter is closed")

// firstBackoff is the first wait before publishing an unacknowledged batch again; each
// further failure doubles it up to Options.MaxBackoff.
const firstBackoff = 50 * time.Millisecond

// breakerFailures consecutive failed publish rounds open the circuit breaker; it stays open
// for Options.MaxBackoff, then lets one round through to probe.
const breakerFailures = 3

// Stats are the emitter's counters since New.
type Stats struct {
	// Emitted counts the events taken into the buffer.
	Emitted uint64
	// Published counts the events JetStream acknowledged, replayed ones included.
	Published uint64
	// Dropped counts the events refused with ErrBufferFull or ErrSpoolFull (and any that
	// could not be encoded, which the log names).
	Dropped uint64
	// Invalid counts the events refused because they failed validation.
	Invalid uint64
	// Retries counts batch publishes that failed and are attempted again (from memory or
	// from the spool), including those not attempted because the breaker was open.
	Retries uint64
	// Buffered is the number of events in memory: taken, not yet acknowledged nor spooled.
	Buffered int

	// Spooled counts the events written to the spool.
	Spooled uint64
	// Replayed counts the events published from the spool (also counted in Published); a new
	// emitter replays what an earlier one left.
	Replayed uint64
	// SpoolFull counts the events Emit refused with ErrSpoolFull.
	SpoolFull uint64
	// SpoolDamaged counts the damaged regions (torn or corrupt records) skipped when a spool
	// segment was read back. A torn last record is one Append never confirmed, written by a
	// process that crashed.
	SpoolDamaged uint64
	// SpoolEvents, SpoolMessages and SpoolBytes are what the spool holds now.
	SpoolEvents, SpoolMessages int
	SpoolBytes                 int64
}

// Emitter publishes usage events to USAGE_RAW in the background. Its methods are safe for
// concurrent use.
type Emitter struct {
	opts    Options
	nc      *nats.Conn
	js      jetstream.JetStream
	metrics *metrics
	now     func() time.Time
	breaker *gobreaker.CircuitBreaker
	spool   *spool.Spool // nil without Options.SpoolDir

	mu sync.Mutex
	// pending holds, per partition, the rows not yet cut into batches.
	pending [][]batch.Row
	// buffered counts the events in pending and in batches neither acknowledged nor
	// spooled; it is what MaxBuffered bounds.
	buffered int
	closed   bool

	emitted, published, dropped, invalid, retries atomic.Uint64
	spooled, replayed, spoolRefused, spoolDamaged atomic.Uint64
	// spoolFull is set when the spool refused a batch for lack of room, and cleared when it
	// took one or a segment was replayed.
	spoolFull atomic.Bool

	// replaying is the spool segment being replayed; only the background goroutine uses it.
	replaying *replay

	kick      chan struct{} // a partition has a full batch
	closing   chan struct{} // Close was called: flush everything, then stop
	closeOnce sync.Once
	ctx       context.Context // cancelled when Close gives up: stop retrying
	cancel    context.CancelFunc
	done      chan struct{} // the background goroutine returned
}

// replay is a spool segment whose messages are being published again.
type replay struct {
	seq uint64
	// rest holds the messages not acknowledged yet.
	rest []rawbatch.Message
}

// New starts an emitter publishing on nc. The streams must exist (stream.Ensure). With
// Options.SpoolDir it opens (and locks) the spool there and starts replaying what it holds.
func New(nc *nats.Conn, opts Options) (*Emitter, error) {
	if nc == nil {
		return nil, errors.New("new emitter: the NATS connection is nil")
	}
	if opts.Name == "" {
		opts.Name = nameOf(nc)
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("invalid emitter options: %w", err)
	}
	opts = opts.withDefaults()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(opts.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("new JetStream context: %w", err)
	}
	e := &Emitter{
		opts:    opts,
		nc:      nc,
		js:      js,
		now:     time.Now,
		pending: make([][]batch.Row, opts.Partitions),
		kick:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.breaker = gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:    "emit-publish",
		Timeout: opts.MaxBackoff,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= breakerFailures
		},
		// Unlike the collector's, this breaker also opens on a full stream: no client is
		// waiting for a 429 here, and while the stream is full new batches belong in the spool.
		OnStateChange: func(_ string, from, to gobreaker.State) {
			opts.Logger.Warn("NATS publish circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	if opts.SpoolDir != "" {
		e.spool, err = spool.Open(opts.SpoolDir, spool.Options{MaxBytes: opts.SpoolMaxBytes, SegmentBytes: opts.SpoolSegmentBytes})
		if err != nil {
			return nil, fmt.Errorf("new emitter: %w", err)
		}
	}
	if e.metrics, err = newMetrics(opts.Registerer, e); err != nil {
		if e.spool != nil {
			e.spool.Close()
		}
		return nil, err
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	go e.run()
	return e, nil
}

// Emit normalizes and validates u and takes it into the buffer. It never blocks: it returns
// the validation error (a *event.FieldError, wrapped) for an invalid event, ErrBufferFull
// when the buffer is full, ErrSpoolFull when the spool is full too, and ErrClosed after
// Close. A nil error means the emitter owns the event and will publish it or spool it.
func (e *Emitter) Emit(u event.Usage) error {
	now := e.now()
	u.Normalize(now)
	if err := u.Validate(now, e.opts.Limits); err != nil {
		e.invalid.Add(1)
		e.metrics.invalid.Inc()
		return fmt.Errorf("emit usage event %q: %w", u.ID, err)
	}
	p := stream.PartitionOf(u.Provider, u.ResponseID, u.ID, e.opts.Partitions)
	row := batch.FromUsage(&u, now, p)
	row.Source = e.opts.Source

	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return ErrClosed
	case e.buffered >= e.opts.MaxBuffered:
		e.mu.Unlock()
		e.dropped.Add(1)
		e.metrics.dropped.Inc()
		if e.spool != nil && e.spoolFull.Load() {
			e.spoolRefused.Add(1)
			e.metrics.spoolRefused.Inc()
			return ErrSpoolFull
		}
		return ErrBufferFull
	}
	e.pending[p] = append(e.pending[p], row)
	e.buffered++
	full := len(e.pending[p]) >= e.opts.BatchSize
	e.mu.Unlock()

	e.emitted.Add(1)
	e.metrics.emitted.Inc()
	if full {
		select {
		case e.kick <- struct{}{}:
		default: // a kick is already pending
		}
	}
	return nil
}

// Close stops taking events, publishes everything buffered, replays the spool while
// publishing works, and waits for the acknowledgements. With a spool it returns nil once
// every event is acknowledged, or spooled after a publish attempted during Close failed:
// at once when the client is disconnected from NATS, after the breaker's next probe when it
// is open. When ctx ends first it stops retrying, spools what is still in memory (past
// SpoolMaxBytes if need be), and returns an error naming how many events are neither
// acknowledged nor spooled (some of them may still have been stored). Close releases the
// spool's directory.
func (e *Emitter) Close(ctx context.Context) error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		close(e.closing)
	})
	select {
	case <-e.done:
	case <-ctx.Done():
		e.cancel()
		<-e.done
	}
	e.cancel()
	var err error
	if n := e.Stats().Buffered; n > 0 {
		err = fmt.Errorf("close emitter: %d events not delivered: %w", n, context.Cause(ctx))
	}
	if e.spool != nil {
		if cerr := e.spool.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close emitter: %w", cerr))
		}
	}
	return err
}

// Stats returns the emitter's counters.
func (e *Emitter) Stats() Stats {
	e.mu.Lock()
	buffered := e.buffered
	e.mu.Unlock()
	st := Stats{
		Emitted:      e.emitted.Load(),
		Published:    e.published.Load(),
		Dropped:      e.dropped.Load(),
		Invalid:      e.invalid.Load(),
		Retries:      e.retries.Load(),
		Buffered:     buffered,
		Spooled:      e.spooled.Load(),
		Replayed:     e.replayed.Load(),
		SpoolFull:    e.spoolRefused.Load(),
		SpoolDamaged: e.spoolDamaged.Load(),
	}
	if e.spool != nil {
		ss := e.spool.Stats()
		st.SpoolEvents, st.SpoolMessages, st.SpoolBytes = ss.Events, ss.Messages, ss.Bytes
	}
	return st
}

// run is the background goroutine. It publishes full batches as soon as they fill, every
// partial batch each FlushInterval, and — after a back-off — what failed, until Close has it
// flush everything or gives up. With a spool, what fails is spooled at once and replayed
// when publishing works again.
func (e *Emitter) run() {
	defer close(e.done)
	ticker := time.NewTicker(e.opts.FlushInterval)
	defer ticker.Stop()
	closing := e.closing
	// held are batches neither acknowledged nor spooled (no spool, or a full one): they are
	// published again from memory after the back-off.
	var held []rawbatch.Message
	defer func() { e.spoolRest(held) }()
	backoff := firstBackoff
	var retryAt time.Time // set while publishing fails: when to try again
	// gaveUp is set when publishing failed after Close was called, with NATS down: what is
	// left in the spool stays there for the next emitter.
	gaveUp := false
	flushAll := false
	lastFlushAll := time.Now()
	for e.ctx.Err() == nil {
		now := time.Now()
		failing := !retryAt.IsZero()
		due := !now.Before(retryAt)
		// While the emitter is closing or retrying, partial batches go out at once: there is
		// no point in holding them back. The clock check keeps a stream of full batches on
		// busy partitions from holding back the partial ones of quiet partitions, which
		// would otherwise wait for a tick that the loop never reaches. During a back-off only
		// full batches are cut (and spooled), so the spool is not filled with small ones.
		all := closing == nil || (due && (flushAll || failing || now.Sub(lastFlushAll) >= e.opts.FlushInterval))
		if all {
			lastFlushAll = now
		}
		flushAll = false

		var msgs []rawbatch.Message
		if due {
			msgs, held = held, nil
		}
		if due || e.spool != nil {
			// With a spool, new batches do not wait for the back-off: they are published, or
			// spooled at once while the breaker is open.
			msgs = append(msgs, e.take(all)...)
		}
		attempted := false
		var err error
		if len(msgs) > 0 {
			attempted = true
			var kept []rawbatch.Message
			kept, err = e.send(msgs)
			held = append(held, kept...)
		}
		if e.spool != nil && due && err == nil && e.spool.Stats().Segments > 0 {
			attempted = true
			err = e.replayStep()
		}
		switch {
		case err != nil && due:
			retryAt = now.Add(backoff)
			backoff = min(2*backoff, e.opts.MaxBackoff)
		case attempted && err == nil:
			retryAt, backoff = time.Time{}, firstBackoff
		}
		if closing == nil && err != nil && e.down(err) {
			gaveUp = true
		}
		if e.ctx.Err() != nil {
			return
		}

		failing = !retryAt.IsZero()
		spoolLeft := e.spool != nil && e.spool.Stats().Segments > 0
		if closing == nil && len(held) == 0 && !e.hasPending() && (!spoolLeft || gaveUp) {
			return // closing, and everything is acknowledged or spooled
		}
		if !failing && (spoolLeft || (closing == nil && (len(held) > 0 || e.hasPending()))) {
			continue // more to replay or flush right now
		}
		var retry <-chan time.Time
		if failing {
			retry = time.After(time.Until(retryAt))
		}
		select {
		case <-e.kick:
		case <-ticker.C:
			flushAll = true
		case <-retry:
		case <-closing:
			// Try everything once more at once: a failure seen before Close may be stale.
			closing, retryAt = nil, time.Time{}
		case <-e.ctx.Done():
			return
		}
	}
}

// down reports whether err, a failure to publish, shows that publishing cannot work now: NATS
// is not connected, or JetStream answered an attempt with an error. A publish the breaker
// refused without trying shows nothing: NATS may be back.
func (e *Emitter) down(err error) bool {
	if !e.nc.IsConnected() {
		return true
	}
	return !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests)
}

// hasPending reports whether rows wait to be cut into batches.
func (e *Emitter) hasPending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rows := range e.pending {
		if len(rows) > 0 {
			return true
		}
	}
	return false
}

// take cuts the pending rows into batches of at most BatchSize rows and encodes each once.
// Unless all is set, only full batches are cut.
func (e *Emitter) take(all bool) []rawbatch.Message {
	var cut [][]batch.Row
	var parts []int
	e.mu.Lock()
	for p, rows := range e.pending {
		n := len(rows)
		if !all {
			n -= n % e.opts.BatchSize
		}
		if n == 0 {
			continue
		}
		for i := 0; i < n; i += e.opts.BatchSize {
			cut = append(cut, rows[i:min(i+e.opts.BatchSize, n)])
			parts = append(parts, p)
		}
		// Copy the rest so the cut rows' array is not appended to while it is encoded.
		e.pending[p] = append([]batch.Row(nil), rows[n:]...)
	}
	e.mu.Unlock()

	var msgs []rawbatch.Message
	for i, rows := range cut {
		m, err := rawbatch.Encode(parts[i], rows, rawbatch.MaxPayload(e.nc))
		if err != nil {
			// Validated rows always encode; if one ever does not, it is dropped loudly
			// rather than retried forever.
			e.opts.Logger.Error("drop a batch of usage events that cannot be encoded", "events", len(rows), "err", err)
			e.settle(0, len(rows))
			continue
		}
		for j := range m {
			m[j].Subject = stream.EmitterRawSubject(parts[i], e.opts.Name)
		}
		msgs = append(msgs, m...)
	}
	return msgs
}

// resubject puts the spooled msgs on this emitter's subjects: a spool written before the
// emitter had a name, or under another, replays where its identity may publish now. The
// message ids stay, and JetStream de-duplicates by id within a stream whatever the subject.
// A message whose subject is not a USAGE_RAW one keeps it (and is refused).
func (e *Emitter) resubject(msgs []rawbatch.Message) {
	for i := range msgs {
		if p, _, err := stream.ParseRawSubject(msgs[i].Subject); err == nil {
			msgs[i].Subject = stream.EmitterRawSubject(p, e.opts.Name)
		}
	}
}

// publish publishes msgs through the circuit breaker and returns those JetStream did not
// acknowledge, with the first error. When the breaker is open nothing is attempted.
func (e *Emitter) publish(msgs []rawbatch.Message) ([]rawbatch.Message, error) {
	var errs []error
	_, err := e.breaker.Execute(func() (any, error) {
		if !e.nc.IsConnected() {
			// Publishing now would only fill the client's reconnect buffer; wait instead.
			return nil, fmt.Errorf("NATS is not connected (status %s)", e.nc.Status())
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.opts.PublishTimeout)
		defer cancel()
		errs = rawbatch.Publish(ctx, e.js, msgs)
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if err == nil {
		return nil, nil
	}
	if errs == nil {
		return msgs, err
	}
	var failed []rawbatch.Message
	for i, err := range errs {
		if err != nil {
			failed = append(failed, msgs[i])
		}
	}
	return failed, err
}

// send publishes msgs. What JetStream does not acknowledge goes to the spool; what cannot be
// spooled (no spool, a full one, a disk error) is returned, to be published again from
// memory. The error is the first publish failure, nil when everything was acknowledged.
func (e *Emitter) send(msgs []rawbatch.Message) (held []rawbatch.Message, err error) {
	unacked, err := e.publish(msgs)
	e.settle(events(msgs)-events(unacked), 0)
	if len(unacked) == 0 {
		return nil, nil
	}
	e.retried(len(unacked), len(msgs), err)
	if e.spool == nil {
		return unacked, err
	}
	return e.toSpool(unacked, false), err
}

// retried counts and logs failed publishes. An open breaker is logged at debug level: its
// opening was logged already.
func (e *Emitter) retried(failed, of int, err error) {
	e.retries.Add(uint64(failed))
	e.metrics.retries.Add(float64(failed))
	level := e.opts.Logger.Warn
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		level = e.opts.Logger.Debug
	}
	level("usage batches not acknowledged, publishing them again later", "batches", failed, "of", of, "err", err)
}

// toSpool writes msgs to the spool — past its limit when pastLimit is set — and returns those
// it could not write.
func (e *Emitter) toSpool(msgs []rawbatch.Message, pastLimit bool) []rawbatch.Message {
	write := e.spool.Append
	if pastLimit {
		write = e.spool.AppendPastLimit
	}
	n, err := write(msgs)
	if n > 0 {
		ev := events(msgs[:n])
		e.mu.Lock()
		e.buffered -= ev
		e.mu.Unlock()
		e.spooled.Add(uint64(ev))
		e.metrics.spooled.Add(float64(ev))
	}
	switch {
	case err == nil:
		e.spoolFull.Store(false)
	case errors.Is(err, spool.ErrFull):
		if !e.spoolFull.Swap(true) {
			e.opts.Logger.Warn("the emitter's spool is full: keeping batches in memory; Emit refuses events with ErrSpoolFull once the buffer is full too",
				"dir", e.opts.SpoolDir, "max_bytes", e.opts.SpoolMaxBytes)
		}
	default:
		e.opts.Logger.Error("write usage batches to the spool, keeping them in memory", "batches", len(msgs)-n, "err", err)
	}
	return msgs[n:]
}

// replayStep publishes the unacknowledged messages of the oldest spool segment, and deletes
// the segment once all of them are acknowledged. It returns the first failure.
func (e *Emitter) replayStep() error {
	if e.replaying == nil {
		seg, ok, err := e.spool.Oldest()
		if err != nil {
			e.opts.Logger.Error("read the oldest spool segment", "err", err)
			return err
		}
		if !ok {
			return nil
		}
		if d := seg.Damage; d.Regions > 0 {
			e.spoolDamaged.Add(uint64(d.Regions))
			e.metrics.spoolDamaged.Add(float64(d.Regions))
			e.opts.Logger.Error("skipped torn or corrupt records in a spool segment",
				"segment", seg.Seq, "regions", d.Regions, "bytes", d.Bytes, "messages", len(seg.Messages))
		}
		e.resubject(seg.Messages)
		e.replaying = &replay{seq: seg.Seq, rest: seg.Messages}
	}
	r := e.replaying
	if len(r.rest) > 0 {
		unacked, err := e.publish(r.rest)
		if ev := events(r.rest) - events(unacked); ev > 0 {
			e.replayed.Add(uint64(ev))
			e.metrics.replayed.Add(float64(ev))
			e.published.Add(uint64(ev))
			e.metrics.published.Add(float64(ev))
		}
		if len(unacked) > 0 {
			e.retried(len(unacked), len(r.rest), err)
			r.rest = unacked
			return err
		}
		r.rest = nil
	}
	if err := e.spool.Remove(r.seq); err != nil {
		e.opts.Logger.Error("remove a replayed spool segment", "err", err)
		return err
	}
	e.replaying = nil
	e.spoolFull.Store(false)
	return nil
}

// spoolRest spools, past the spool's limit, what is still in memory when the background
// goroutine stops, so that Close never drops events it could keep on disk.
func (e *Emitter) spoolRest(held []rawbatch.Message) {
	if e.spool == nil {
		return
	}
	msgs := append(held, e.take(true)...)
	if len(msgs) > 0 {
		e.toSpool(msgs, true)
	}
}

func events(msgs []rawbatch.Message) int {
	n := 0
	for i := range msgs {
		n += msgs[i].Events
	}
	return n
}

// settle removes delivered and dropped events from the buffer count.
func (e *Emitter) settle(delivered, dropped int) {
	e.mu.Lock()
	e.buffered -= delivered + dropped
	e.mu.Unlock()
	if delivered > 0 {
		e.published.Add(uint64(delivered))
		e.metrics.published.Add(float64(delivered))
	}
	if dropped > 0 {
		e.dropped.Add(uint64(dropped))
		e.metrics.dropped.Add(float64(dropped))
	}
}
