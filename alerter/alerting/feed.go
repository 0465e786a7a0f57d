package alerting

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage"
)

// The feed brings the alerter every enriched batch once.
//
// Live, it reads USAGE_ENRICHED through the consumer alerter-live, which acknowledges
// nothing: under interest retention a message leaves the working stream once every consumer
// has it, and this one has it once it is delivered. Reading the copies in USAGE_HISTORY
// instead costs nats-server a fresh 8 MiB block buffer for each block read (docs/benchmarks.md,
// session 18), so the history is read only for what the live consumer did not deliver:
//   - at start-up, the newest Replay of it (see Start);
//   - after the alerter fell LiveMaxPending batches behind: it deletes its live consumer, which
//     lets go of what it held, and reads those batches from the history instead;
//   - after the live consumer was lost (deleted after LiveInactive without pulls, or by
//     another alerter starting);
//   - all the time, while the server refuses the live consumer (an identity without the
//     grant), trying it again every liveRetry.
//
// So a stopped alerter holds back USAGE_ENRICHED for LiveInactive at most, and a slow one by
// LiveMaxPending batches. Each copy in the history carries its USAGE_ENRICHED sequence (the
// Nats-Stream-Source header), and the stream's sequences have no holes: the feed reads the
// copies up to the sequence at which a new live consumer starts, skips those it counted, and
// reads further back when a copy it expects is missing. Every batch is counted once.

// Defaults of the live consumer's bounds.
const (
	DefaultLiveMaxPending = 1024
	DefaultLiveInactive   = 10 * time.Second
)

// LiveConsumerName is the alerter's consumer on USAGE_ENRICHED.
const LiveConsumerName = stream.AlerterLiveConsumer

const (
	// fetchBatch is how many copies one fetch from the history asks for.
	fetchBatch = 256
	// tailPoll is how often the feed looks for copies the history does not hold yet.
	tailPoll = 20 * time.Millisecond
	// retryWait is the pause before the feed tries again after an error.
	retryWait = time.Second
	// liveRetry is how often the feed tries again to create the live consumer, reading the
	// history meanwhile, when the server refused it (an identity without the grant, as
	// after an upgrade whose auth.conf was not rewritten); historyPoll is how often it then
	// looks for new copies.
	liveRetry   = 30 * time.Second
	historyPoll = 100 * time.Millisecond
)

// lookBack is how far before the last batch counted a catch-up starts reading the history,
// by attempt: a copy is stored after its original, but the two streams' servers may
// disagree about the time. Past the last attempt a missing copy is given up.
var lookBack = []time.Duration{time.Second, time.Minute, 15 * time.Minute}

// position is the last USAGE_ENRICHED batch counted: its sequence (0: none yet) and about
// when it was stored.
type position struct {
	seq uint64
	at  time.Time
}

// gapError reports that the history's next copy is not the one after the last counted.
type gapError struct{ want, got uint64 }

func (e gapError) Error() string {
	return fmt.Sprintf("USAGE_HISTORY has no copy of USAGE_ENRICHED batches %d to %d", e.want, e.got-1)
}

// runFeed counts the enriched batches until ctx ends: the history from `from` on, then live,
// then the history again whenever the live consumer falls behind or is lost.
func (a *Alerter) runFeed(ctx context.Context, from time.Time) {
	defer a.deleteLive()
	var pos position
	reason, attempt := "start", 0
	for ctx.Err() == nil {
		a.m.catchUps.WithLabelValues(reason).Inc()
		live, err := a.catchUp(ctx, &pos, from, attempt >= len(lookBack)-1)
		var gap gapError
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &gap):
			attempt++
			from = pos.at.Add(-lookBack[attempt])
			a.cfg.Logger.Warn("read the history further back", "err", err, "from", from)
			continue
		case err != nil:
			a.cfg.Logger.Warn("catch up from the history", "err", err)
			stage.Sleep(ctx, retryWait)
			continue
		}
		attempt = 0
		reason = a.readLive(ctx, live, &pos)
		a.deleteLive()
		if reason == "lost" {
			stage.Sleep(ctx, 100*time.Millisecond) // the server or the connection may be going away
		}
		from = pos.at.Add(-lookBack[0])
	}
}

// catchUp counts the copies in the history from `from` on that follow pos, creates the live
// consumer once the history's end is near, and returns it once every batch before its
// start is counted. While the live consumer cannot be created it goes on reading the
// history, as alerters before the live consumer did. A copy missing after pos is a gapError unless tolerateGap, when the
// batches missing are given up and counted in tokenmeter_alerter_batches_missed_total.
func (a *Alerter) catchUp(ctx context.Context, pos *position, from time.Time, tolerateGap bool) (jetstream.Consumer, error) {
	h, err := a.js.CreateConsumer(ctx, stream.History, jetstream.ConsumerConfig{
		Description:       "the alerter catching up",
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &from,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     stream.EnrichedPrefix + "*",
		InactiveThreshold: a.cfg.LiveInactive,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("create a consumer on %s: %w", stream.History, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.js.DeleteConsumer(dctx, stream.History, h.CachedInfo().Name)
	}()
	var (
		live jetstream.Consumer
		end  uint64 // the last sequence before the live consumer's first
		// done is set once every copy up to end has been read: a later copy came, or the
		// history held one (historyHolds) before a fetch that returned nothing.
		done, held bool
		waitFrom   time.Time
		retryLive  time.Time // when to try creating the live consumer again
	)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := h.FetchNoWait(fetchBatch)
		if err != nil {
			return nil, fmt.Errorf("fetch from %s: %w", stream.History, err)
		}
		n, pending := 0, uint64(0)
		for m := range b.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			pending = meta.NumPending
			src, ok := sourceSeq(m.Headers())
			switch {
			case !ok:
				a.cfg.Logger.Warn("skip a copy without its source sequence", "seq", meta.Sequence.Stream)
				continue
			case src <= pos.seq:
				continue // counted already
			case pos.seq > 0 && src != pos.seq+1:
				if !tolerateGap {
					return nil, gapError{pos.seq + 1, src}
				}
				a.m.missed.Add(float64(src - pos.seq - 1))
				a.cfg.Logger.Error("gave up enriched batches the history no longer holds", "err", gapError{pos.seq + 1, src})
			}
			if live != nil && src > end {
				done = true // the live consumer's; the copies before it have all come
				continue
			}
			a.count(m.Data(), meta.Timestamp.Before(a.started))
			*pos = position{src, meta.Timestamp}
		}
		if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("fetch from %s: %w", stream.History, err)
		}
		if live == nil && (n == 0 || pending < uint64(a.cfg.LiveMaxPending/4)) && !time.Now().Before(retryLive) {
			if live, end, err = a.createLive(ctx); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				a.m.historyOnly.Set(1)
				a.cfg.Logger.Error("cannot read USAGE_ENRICHED live; reading USAGE_HISTORY meanwhile", "err", err, "retry in", liveRetry)
				live, retryLive = nil, time.Now().Add(liveRetry)
				continue
			}
			a.m.historyOnly.Set(0)
			if end < pos.seq { // USAGE_ENRICHED was made anew: its sequences start over
				*pos = position{}
			}
			waitFrom = time.Now()
			continue
		}
		if live == nil {
			if n == 0 {
				stage.Sleep(ctx, historyPoll)
			}
			continue
		}
		if done || pos.seq >= end || held && n == 0 {
			*pos = position{max(pos.seq, end), later(pos.at, waitFrom)}
			return live, nil
		}
		if n > 0 {
			continue
		}
		// The history holds nothing more for now: either the copies up to end are older
		// than `from` (nothing was published since), or they have yet to come.
		if held, err = a.historyHolds(ctx, end); err != nil {
			return nil, err
		}
		if !held {
			if time.Since(waitFrom) > a.cfg.LiveInactive {
				return nil, fmt.Errorf("%s holds no copy of USAGE_ENRICHED batch %d after %s", stream.History, end, a.cfg.LiveInactive)
			}
			stage.Sleep(ctx, tailPoll)
		}
	}
}

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// historyHolds reports whether the history holds the copy of USAGE_ENRICHED batch seq, or
// a later one (the copies are stored in order).
func (a *Alerter) historyHolds(ctx context.Context, seq uint64) (bool, error) {
	s, err := a.js.Stream(ctx, stream.History)
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", stream.History, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, stream.EnrichedPrefix+"*")
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read the newest copy in %s: %w", stream.History, err)
	}
	src, ok := sourceSeq(m.Header)
	return ok && src >= seq, nil
}

// createLive creates the live consumer, to deliver what USAGE_ENRICHED stores from now on,
// and returns it with the last sequence stored before it.
func (a *Alerter) createLive(ctx context.Context) (jetstream.Consumer, uint64, error) {
	a.deleteLive() // what another alerter left, or ours of a moment ago
	c, err := a.js.CreateConsumer(ctx, stream.Enriched, jetstream.ConsumerConfig{
		Durable:           LiveConsumerName,
		Description:       "feeds the alerter; it lets go of what it holds when the alerter stops or falls behind",
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubject:     stream.EnrichedPrefix + "*",
		InactiveThreshold: a.cfg.LiveInactive,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("create consumer %s on %s: %w", LiveConsumerName, stream.Enriched, err)
	}
	return c, c.CachedInfo().Delivered.Stream, nil
}

// deleteLive deletes the live consumer, if there is one.
func (a *Alerter) deleteLive() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.js.DeleteConsumer(ctx, stream.Enriched, LiveConsumerName); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		a.cfg.Logger.Warn("delete the live consumer", "err", err)
	}
}

// readLive counts what the live consumer delivers until it falls LiveMaxPending behind
// ("behind"), fails or skips a batch ("lost"), or ctx ends, and says which.
func (a *Alerter) readLive(ctx context.Context, live jetstream.Consumer, pos *position) string {
	// The client's buffer holds what the server delivered, which the server no longer
	// counts as pending: keep it well under LiveMaxPending.
	it, err := live.Messages(jetstream.PullMaxMessages(min(fetchBatch, max(a.cfg.LiveMaxPending/4, 1))), jetstream.PullExpiry(max(a.cfg.LiveInactive/2, time.Second)))
	if err != nil {
		a.cfg.Logger.Warn("read the live consumer", "err", err)
		return "lost"
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() == nil {
				a.cfg.Logger.Warn("lost the live consumer", "err", err)
			}
			return "lost"
		}
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		if pos.seq > 0 && meta.Sequence.Stream != pos.seq+1 {
			// Another reader of alerter-live (an alerter starting while this one stops)
			// was sent the batches between, or a delivery was lost with the connection.
			a.cfg.Logger.Warn("the live consumer skipped batches; reading them from the history", "after", pos.seq, "got", meta.Sequence.Stream)
			return "lost"
		}
		a.count(m.Data(), false)
		*pos = position{meta.Sequence.Stream, meta.Timestamp}
		if meta.NumPending > uint64(a.cfg.LiveMaxPending) {
			a.cfg.Logger.Warn("fell behind USAGE_ENRICHED; reading its history instead", "pending", meta.NumPending)
			return "behind"
		}
	}
}

// count counts one enriched batch; replayed: see add. The aggregator dead-letters
// undecodable batches; the alerter just skips them.
func (a *Alerter) count(data []byte, replayed bool) {
	if err := a.add(data, replayed); err != nil {
		a.cfg.Logger.Warn("skip undecodable enriched batch", "err", err)
	}
}

// streamSourceHeader is where a stream puts which stream and sequence a copy came from.
const streamSourceHeader = "Nats-Stream-Source"

// sourceSeq is the source stream's sequence in a copy's Nats-Stream-Source header:
// "<stream> <seq> <filter> <transform> …", or the original's reply subject
// "$JS.ACK.<stream>.<consumer>.<delivered>.<seq>.…" as servers before 2.10 wrote it.
func sourceSeq(h nats.Header) (uint64, bool) {
	v := h.Get(streamSourceHeader)
	var field string
	if rest, ok := strings.CutPrefix(v, "$JS.ACK."); ok {
		tokens := strings.Split(rest, ".")
		switch {
		case len(tokens) == 7: // $JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<dseq>.<ts>.<pending>
			field = tokens[3]
		case len(tokens) >= 10: // with a domain and an account hash before the stream
			field = tokens[5]
		}
	} else if fields := strings.Fields(v); len(fields) >= 2 {
		field = fields[1]
	}
	seq, err := strconv.ParseUint(field, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}
