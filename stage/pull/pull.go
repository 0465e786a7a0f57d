// Package pull collects batches of messages from a JetStream pull consumer, the one fetch loop
// of the stages that work in batches (the enricher, the aggregator's partition writers, the
// outcome writer).
//
// A batch starts with the first message to come (a fetch of one, which returns as soon as
// there is work) and closes when it holds MaxItems items or MaxWait after that first message.
// Fetches in between ask for about as many messages as the batch still has room for, judged
// by the items per message of the batch before.
package pull

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// DefaultIdleWait is how long the fetch for a batch's first message waits; it bounds how
	// long an idle stage takes to notice shutdown.
	DefaultIdleWait = time.Second
	// maxFetch caps the messages of one fetch request.
	maxFetch = 256
	// minFetchWait is the shortest expiry a pull request is given. A pull that expires within
	// a few milliseconds can expire while the server is still sending under load: what it sent
	// then stays delivered and unacknowledged until the ack wait (minutes), with the stage
	// idle (seen in 5 of 17 benchmark runs of the aggregator). With less time left in a batch,
	// a fetch takes only what is already there.
	minFetchWait = 100 * time.Millisecond
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 10 * time.Second
)

// Batcher collects batches from one consumer. It is not safe for concurrent use.
type Batcher struct {
	Consumer jetstream.Consumer
	// Stream names the consumer's stream in log messages.
	Stream string
	Log    *slog.Logger
	// MaxItems closes a batch once its messages hold this many items (rows, events,
	// messages: whatever take counts).
	MaxItems int
	// MaxWait closes a batch this long after its first message. With 0, a batch is its
	// first message and what else is already there, up to MaxItems.
	MaxWait time.Duration
	// IdleWait is how long the fetch of a batch's first message waits; DefaultIdleWait when 0.
	IdleWait time.Duration

	perMsg  int // items per message of the last batch
	backoff time.Duration
}

// Next collects one batch, handing each message to take in the order they came; take returns
// the items the message added to the batch (0 for one it set aside, e.g. dead-lettered). Next
// returns the messages it handed over: 0 when none came within IdleWait or ctx ended. Fetch
// errors are logged and retried after a growing pause (0.1 s … 10 s).
func (b *Batcher) Next(ctx context.Context, take func(jetstream.Msg) int) (msgs int) {
	if b.perMsg == 0 {
		b.perMsg = max(b.MaxItems/16, 1)
	}
	if b.backoff == 0 {
		b.backoff = minBackoff
	}
	idle := b.IdleWait
	if idle == 0 {
		idle = DefaultIdleWait
	}
	var (
		items    int
		deadline time.Time
	)
	for items < b.MaxItems && ctx.Err() == nil {
		var (
			mb     jetstream.MessageBatch
			err    error
			noWait bool
			last   bool
		)
		if msgs == 0 {
			mb, err = b.Consumer.Fetch(1, jetstream.FetchMaxWait(idle))
		} else {
			n := min(max((b.MaxItems-items)/b.perMsg, 1), maxFetch)
			left := time.Until(deadline)
			if left >= minFetchWait {
				mb, err = b.Consumer.Fetch(n, jetstream.FetchMaxWait(left))
			} else {
				// Past the deadline, one fetch still takes what is already there; a batch with
				// MaxWait 0 takes it until nothing more is there or it is full.
				noWait, last = true, left < time.Millisecond && b.MaxWait > 0
				mb, err = b.Consumer.FetchNoWait(n)
			}
		}
		took := 0
		if err == nil {
			for m := range mb.Messages() {
				items += take(m)
				took++
			}
			err = mb.Error()
		}
		msgs += took
		if err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			if ctx.Err() != nil {
				break
			}
			b.Log.Warn("fetch from "+b.Stream+" failed; retrying", "err", err, "in", b.backoff)
			select {
			case <-ctx.Done():
			case <-time.After(b.backoff):
			}
			b.backoff = min(2*b.backoff, maxBackoff)
			continue
		}
		b.backoff = minBackoff
		if msgs == 0 {
			return 0 // idle: the caller looks at its context and comes again
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(b.MaxWait)
		}
		if last || (noWait && took == 0) {
			break // nothing more now: the batch closes rather than asking again and again
		}
	}
	if msgs > 0 {
		b.perMsg = max(items/msgs, 1)
	}
	return msgs
}
