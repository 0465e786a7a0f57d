package enrich

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage"
)

// DefaultMaxAhead is Config.MaxAhead's default: eight of nats-server's 8 MiB file-store
// blocks.
const DefaultMaxAhead = 64 << 20

// aheadStall is how long USAGE_ENRICHED may go without a message leaving it before the
// aggregators count as stalled and the enricher stops waiting for them. It is well above
// the time an aggregator takes to start (its lease, its de-duplication sets from ClickHouse)
// and to insert a batch on a busy machine: with 2 s the enricher took aggregators that were
// still starting for stalled and ran 150 MiB ahead in the first seconds of a run.
const aheadStall = 10 * time.Second

// aheadPoll is how often a held worker looks at USAGE_ENRICHED again.
const aheadPoll = 10 * time.Millisecond

// aheadLook is how long a look that let the workers go stands for the batches after it, as
// long as what they publish keeps the stream's bytes at that look under the limit: each look
// is a STREAM.INFO request, which cost the enricher and nats-server together ~0.2 µs of every
// event when made for each batch.
const aheadLook = 50 * time.Millisecond

// ahead keeps the enricher at most Config.MaxAhead bytes ahead of the aggregators while they
// make progress. Without it a fast intake fills USAGE_ENRICHED with a backlog that every
// aggregator partition reads back from disk at its own position: nats-server then holds
// many of its 8 MiB block caches at once (measured: the single process's live heap 1.15 GB
// at full speed, of which 350 MB block buffers). Held back, the backlog waits in USAGE_RAW,
// which one consumer reads in order, and the stage's memory stays bounded.
//
// When nothing has left USAGE_ENRICHED for aheadStall (the aggregators are down, or
// ClickHouse is) the enricher goes on regardless, so that the alerter, which reads the
// enriched copies in USAGE_HISTORY, keeps seeing spend while the aggregators cannot write.
type ahead struct {
	limit uint64
	now   func() time.Time

	mu       sync.Mutex
	seen     bool
	consumed uint64    // messages that have left the stream, at the last look
	progress time.Time // when consumed last grew
	went     time.Time // when a look last let the workers go
	bytes    uint64    // the stream's bytes then
	since    uint64    // bytes published since
}

func newAhead(limit int64, now func() time.Time) *ahead {
	if limit < 0 {
		return nil
	}
	return &ahead{limit: uint64(limit), now: now}
}

// hold reports whether a worker should wait, given the stream's state: it holds bytes, and
// consumed messages have left it so far (its last sequence minus the messages it holds).
func (a *ahead) hold(bytes, consumed uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if !a.seen || consumed != a.consumed {
		a.seen, a.consumed, a.progress = true, consumed, now
	}
	held := bytes > a.limit && now.Sub(a.progress) < aheadStall
	if !held {
		a.went, a.bytes, a.since = now, bytes, 0
	}
	return held
}

// sent counts n bytes published to USAGE_ENRICHED.
func (a *ahead) sent(n int) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.since += uint64(n)
	a.mu.Unlock()
}

// recent reports whether a look within aheadLook let the workers go, and what they published
// since keeps the stream under the limit.
func (a *ahead) recent() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.went.IsZero() && a.now().Sub(a.went) < aheadLook && a.bytes+a.since <= a.limit
}

// wait returns once USAGE_ENRICHED holds no more than the limit, the aggregators have
// stalled, or ctx is done. It reports how long it waited. A stream it cannot read does not
// hold the worker: the publish that follows reports the trouble.
func (a *ahead) wait(ctx context.Context, js jetstream.JetStream) time.Duration {
	if a == nil || a.recent() {
		return 0
	}
	start := a.now()
	for ctx.Err() == nil {
		s, err := js.Stream(ctx, stream.Enriched)
		if err != nil {
			break
		}
		st := s.CachedInfo().State
		if !a.hold(st.Bytes, st.LastSeq-st.Msgs) {
			break
		}
		stage.Sleep(ctx, aheadPoll)
	}
	return a.now().Sub(start)
}
