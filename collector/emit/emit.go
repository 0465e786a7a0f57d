// Package emit is the library that services use to publish usage events straight to
// JetStream's USAGE_RAW, without going through the collector's HTTP API.
//
// Emit never blocks the caller: events go into a bounded buffer, and a background goroutine
// groups them per partition into batches, encodes every batch once and publishes it with a
// message id derived from its bytes. A batch that is not acknowledged is published again —
// the very same bytes, so the same message id and the same event ids — until JetStream
// acknowledges it, so an outage costs latency and buffer space, not events. When the buffer is
// full, Emit says so with ErrBufferFull instead of dropping silently.
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

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// ErrBufferFull is returned by Emit when MaxBuffered events are waiting for JetStream's
// acknowledgement: the event is not taken, and the caller decides whether to drop it, spool
// it or slow down. Every such event is counted in Stats().Dropped.
var ErrBufferFull = errors.New("emitter buffer is full")

// ErrClosed is returned by Emit after Close was called.
var ErrClosed = errors.New("emitter is closed")

// firstBackoff is the first wait before publishing an unacknowledged batch again; each
// further failure doubles it up to Options.MaxBackoff.
const firstBackoff = 50 * time.Millisecond

// Stats are the emitter's counters since New.
type Stats struct {
	// Emitted counts the events taken into the buffer.
	Emitted uint64
	// Published counts the events JetStream acknowledged.
	Published uint64
	// Dropped counts the events refused with ErrBufferFull (and any that could not be
	// encoded, which the log names).
	Dropped uint64
	// Invalid counts the events refused because they failed validation.
	Invalid uint64
	// Retries counts batch publishes that failed and are attempted again.
	Retries uint64
	// Buffered is the number of events taken but not yet acknowledged.
	Buffered int
}

// Emitter publishes usage events to USAGE_RAW in the background. Its methods are safe for
// concurrent use.
type Emitter struct {
	opts    Options
	nc      *nats.Conn
	js      jetstream.JetStream
	metrics *metrics
	now     func() time.Time

	mu sync.Mutex
	// pending holds, per partition, the rows not yet cut into batches.
	pending [][]batch.Row
	// buffered counts the events in pending and in batches not yet acknowledged; it is what
	// MaxBuffered bounds.
	buffered int
	closed   bool

	emitted, published, dropped, invalid, retries atomic.Uint64

	kick      chan struct{} // a partition has a full batch
	closing   chan struct{} // Close was called: flush everything, then stop
	closeOnce sync.Once
	ctx       context.Context // cancelled when Close gives up: stop retrying
	cancel    context.CancelFunc
	done      chan struct{} // the background goroutine returned
}

// New starts an emitter publishing on nc. The streams must exist (stream.Ensure).
func New(nc *nats.Conn, opts Options) (*Emitter, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("invalid emitter options: %w", err)
	}
	if nc == nil {
		return nil, errors.New("new emitter: the NATS connection is nil")
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
	if e.metrics, err = newMetrics(opts.Registerer, e); err != nil {
		return nil, err
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	go e.run()
	return e, nil
}

// Emit normalizes and validates u and takes it into the buffer. It never blocks: it returns
// the validation error (a *event.FieldError, wrapped) for an invalid event, ErrBufferFull
// when the buffer is full, and ErrClosed after Close. A nil error means the emitter owns the
// event and will publish it unless Close gives up.
func (e *Emitter) Emit(u event.Usage) error {
	now := e.now()
	u.Normalize(now)
	if err := u.Validate(now, e.opts.Limits); err != nil {
		e.invalid.Add(1)
		e.metrics.invalid.Inc()
		return fmt.Errorf("emit usage event %q: %w", u.ID, err)
	}
	p := stream.Partition(u.ID, e.opts.Partitions)
	row := batch.FromUsage(&u, now, p)

	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return ErrClosed
	case e.buffered >= e.opts.MaxBuffered:
		e.mu.Unlock()
		e.dropped.Add(1)
		e.metrics.dropped.Inc()
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

// Close stops taking events, publishes everything buffered and waits for its
// acknowledgements. When ctx ends first it stops retrying and returns an error naming how
// many events were not confirmed delivered (some of them may still have been stored).
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
	if n := e.Stats().Buffered; n > 0 {
		return fmt.Errorf("close emitter: %d events not delivered: %w", n, context.Cause(ctx))
	}
	return nil
}

// Stats returns the emitter's counters.
func (e *Emitter) Stats() Stats {
	e.mu.Lock()
	buffered := e.buffered
	e.mu.Unlock()
	return Stats{
		Emitted:   e.emitted.Load(),
		Published: e.published.Load(),
		Dropped:   e.dropped.Load(),
		Invalid:   e.invalid.Load(),
		Retries:   e.retries.Load(),
		Buffered:  buffered,
	}
}

// run is the background goroutine. It publishes full batches as soon as they fill, every
// partial batch each FlushInterval, and batches that failed after a back-off, until Close has
// it flush everything or gives up.
func (e *Emitter) run() {
	defer close(e.done)
	ticker := time.NewTicker(e.opts.FlushInterval)
	defer ticker.Stop()
	closing := e.closing
	var retry []rawbatch.Message
	backoff := firstBackoff
	flushAll := false
	lastFlushAll := time.Now()
	for {
		// While batches are failing or the emitter is closing, partial batches go out at
		// once: there is no point in holding them back. The clock check keeps a stream of
		// full batches on busy partitions from holding back the partial ones of quiet
		// partitions, which would otherwise wait for a tick that the loop never reaches.
		all := flushAll || closing == nil || len(retry) > 0 || time.Since(lastFlushAll) >= e.opts.FlushInterval
		if all {
			lastFlushAll = time.Now()
		}
		msgs := append(retry, e.take(all)...)
		flushAll = false
		if len(msgs) > 0 {
			if retry = e.deliver(msgs); len(retry) == 0 {
				backoff = firstBackoff
				continue
			}
			select {
			case <-time.After(backoff):
			case <-closing:
				closing = nil
			case <-e.ctx.Done():
				return
			}
			backoff = min(2*backoff, e.opts.MaxBackoff)
			continue
		}
		if closing == nil {
			return // closing, and everything is delivered
		}
		select {
		case <-e.kick:
		case <-ticker.C:
			flushAll = true
		case <-closing:
			closing = nil
		case <-e.ctx.Done():
			return
		}
	}
}

// take cuts the pending rows into batches of at most BatchSize rows and encodes each once.
// Unless all is set, only full batches are cut.
//
// This is the seam for disk spooling: a spool would persist what take returns and delete it
// when deliver reports it acknowledged.
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
		msgs = append(msgs, m...)
	}
	return msgs
}

// deliver publishes msgs and returns those JetStream did not acknowledge, to be published
// again unchanged.
func (e *Emitter) deliver(msgs []rawbatch.Message) []rawbatch.Message {
	var errs []error
	if !e.nc.IsConnected() {
		// Publishing now would only fill the client's reconnect buffer; wait instead.
		err := fmt.Errorf("NATS is not connected (status %s)", e.nc.Status())
		errs = make([]error, len(msgs))
		for i := range errs {
			errs[i] = err
		}
	} else {
		ctx, cancel := context.WithTimeout(e.ctx, e.opts.PublishTimeout)
		errs = rawbatch.Publish(ctx, e.js, msgs)
		cancel()
	}
	var failed []rawbatch.Message
	var firstErr error
	delivered := 0
	for i, err := range errs {
		if err == nil {
			delivered += msgs[i].Events
			continue
		}
		if firstErr == nil {
			firstErr = err
		}
		failed = append(failed, msgs[i])
	}
	e.settle(delivered, 0)
	if len(failed) > 0 {
		e.retries.Add(uint64(len(failed)))
		e.metrics.retries.Add(float64(len(failed)))
		e.opts.Logger.Warn("usage batches not acknowledged, publishing them again after a back-off",
			"batches", len(failed), "of", len(msgs), "err", firstErr)
	}
	return failed
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
