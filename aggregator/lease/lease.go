// Package lease keeps each partition to one writer across aggregator processes. A writer
// holds a key per partition in a JetStream key-value bucket whose entries expire unless
// renewed; a second aggregator given the same partition (two replicas of one Deployment, a
// copy-pasted ownership set) waits for the key instead of writing beside the first, which
// would store events twice since each writer's de-duplication set lives in its own memory.
//
// A lease is not a fence: a writer that stalls past its expiry (a long pause, a partition
// from NATS) may finish an INSERT it had started. Held turns false a margin before the
// server drops the key, and the aggregator checks it before every INSERT.
package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// DefaultTTL is how long a lease outlives its last renewal; a writer that dies without
// releasing it holds its partition up for that long, unless it comes back under the same
// holder name (the host name, by default).
const DefaultTTL = 15 * time.Second

// Key is the key of partition p's lease.
func Key(p int) string { return "partition-" + strconv.Itoa(p) }

// Open returns the lease bucket, creating it with ttl when missing, and the TTL it has: that
// of a bucket created earlier (by an operator, or another version) is the one that counts.
// A new bucket has as many replicas as the streams (stream.BucketReplicas), so that on a
// JetStream cluster the leases outlive the loss of a server as the partitions do.
func Open(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (jetstream.KeyValue, time.Duration, error) {
	bucket, err := js.KeyValue(ctx, kv.Leases)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		var replicas int
		if replicas, err = stream.BucketReplicas(ctx, js, kv.Leases); err != nil {
			return nil, 0, fmt.Errorf("open KV bucket %s: %w", kv.Leases, err)
		}
		bucket, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: kv.Leases, Description: "tokenmeter: which aggregator writes each partition", History: 1, TTL: ttl,
			Storage: jetstream.FileStorage, Replicas: replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			bucket, err = js.KeyValue(ctx, kv.Leases)
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open KV bucket %s: %w", kv.Leases, err)
	}
	st, err := bucket.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read the settings of KV bucket %s: %w", kv.Leases, err)
	}
	if st.TTL() <= 0 {
		// A dead writer's lease would never expire, and its partitions never be written again.
		return nil, 0, fmt.Errorf("KV bucket %s has no TTL; delete it (nats kv rm %s) so that it is created with one", kv.Leases, kv.Leases)
	}
	return bucket, st.TTL(), nil
}

// Lease is one partition's lease as one holder sees it. It is safe for concurrent use.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration
	now    func() time.Time

	// renewing is held through a renewal and a release: a release waits for the renewal in
	// flight, which may move the entry on a revision.
	renewing sync.Mutex
	mu       sync.Mutex
	rev      uint64    // revision of our entry; 0 when not held
	until    time.Time // Held is true before it
	// unanswered: the last renewal failed without an answer, so it may have landed.
	unanswered atomic.Bool
}

// New returns partition p's lease for holder, not yet acquired. ttl must be the bucket's.
func New(kv jetstream.KeyValue, p int, holder string, ttl time.Duration, now func() time.Time) *Lease {
	return &Lease{kv: kv, key: Key(p), holder: holder, ttl: ttl, now: now}
}

// margin is how long before the server may drop the key Held turns false, for the clocks and
// the INSERT checked against it.
func (l *Lease) margin() time.Duration { return l.ttl / 3 }

// Held reports whether the lease is ours and will not expire within the margin.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev != 0 && l.now().Before(l.until)
}

// HeldByOtherError says who holds a lease that Acquire is waiting for.
type HeldByOtherError struct{ Key, Holder string }

func (e *HeldByOtherError) Error() string {
	return fmt.Sprintf("the lease %s is held by %q; waiting for it to be released or to expire", e.Key, e.Holder)
}

// Acquire takes the lease, waiting while another holder has it; each time it finds the lease
// taken or cannot reach NATS it calls wait with the reason. It returns ctx's error when ctx
// ends first. An entry under our own holder name is ours: a writer restarted on the same host
// takes its partitions back at once.
func (l *Lease) Acquire(ctx context.Context, wait func(error)) error {
	for {
		err := l.try(ctx)
		if err == nil {
			return nil
		}
		wait(err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.ttl / 10):
		}
	}
}

func (l *Lease) try(ctx context.Context) error {
	start := l.now()
	e, err := l.kv.Get(ctx, l.key)
	var rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = l.kv.Create(ctx, l.key, []byte(l.holder))
	case err != nil:
	case string(e.Value()) == l.holder:
		rev, err = l.kv.Update(ctx, l.key, []byte(l.holder), e.Revision())
	default:
		return &HeldByOtherError{Key: l.key, Holder: string(e.Value())}
	}
	if err != nil {
		return fmt.Errorf("take the lease %s: %w", l.key, err)
	}
	l.mu.Lock()
	l.rev, l.until = rev, start.Add(l.ttl-l.margin())
	l.mu.Unlock()
	return nil
}

// ErrLost means the lease was taken by another holder while we thought it ours.
var ErrLost = errors.New("the lease was taken by another holder")

// Renew extends a held lease. It returns ErrLost (wrapped) when the entry is no longer ours;
// any other error (NATS unreachable) leaves the lease to lapse when Held turns false.
func (l *Lease) Renew(ctx context.Context) error {
	l.renewing.Lock()
	defer l.renewing.Unlock()
	l.mu.Lock()
	rev := l.rev
	l.mu.Unlock()
	if rev == 0 {
		return fmt.Errorf("renew the lease %s: %w", l.key, ErrLost)
	}
	start := l.now()
	next, err := l.kv.Update(ctx, l.key, []byte(l.holder), rev)
	if errors.Is(err, jetstream.ErrKeyExists) && l.unanswered.Load() {
		// The last renewal's answer was lost (a timeout under load), but it may have landed
		// all the same: the entry then still names us, a revision on.
		if e, gerr := l.kv.Get(ctx, l.key); gerr == nil && string(e.Value()) == l.holder {
			next, err = l.kv.Update(ctx, l.key, []byte(l.holder), e.Revision())
		}
	}
	l.unanswered.Store(err != nil && !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyNotFound))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
			l.mu.Lock()
			l.rev = 0
			l.mu.Unlock()
			return fmt.Errorf("renew the lease %s: %w", l.key, ErrLost)
		}
		return fmt.Errorf("renew the lease %s: %w", l.key, err)
	}
	l.mu.Lock()
	l.rev, l.until = next, start.Add(l.ttl-l.margin())
	l.mu.Unlock()
	return nil
}

// RenewEvery renews the lease every ttl/5 while it is ours, until ctx ends, calling lost when
// it finds the lease gone and failed on other errors.
func (l *Lease) RenewEvery(ctx context.Context, lost, failed func(error)) {
	t := time.NewTicker(l.ttl / 5)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !l.isOurs() {
			continue // the owner re-acquires it
		}
		if err := l.Renew(ctx); errors.Is(err, ErrLost) {
			lost(err)
		} else if err != nil && ctx.Err() == nil {
			failed(err)
		}
	}
}

func (l *Lease) isOurs() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev != 0
}

// Release deletes the entry if it is still ours, so that a waiting writer takes over at once.
// A renewal stopped while in flight (its context ended: the writer is stopping) may have
// landed unanswered, leaving the entry a revision ahead; it is then deleted at the revision it
// has while it still names us (within 5 s). Otherwise the waiting writer would wait for it to
// expire.
func (l *Lease) Release() {
	l.renewing.Lock()
	defer l.renewing.Unlock()
	l.mu.Lock()
	rev := l.rev
	l.rev = 0
	l.mu.Unlock()
	if rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
	for err != nil && l.unanswered.Load() {
		e, gerr := l.kv.Get(ctx, l.key)
		if gerr != nil || string(e.Value()) != l.holder {
			return
		}
		// On a JetStream cluster a replica a moment behind may answer the Get with the
		// revision before the renewal; the Delete then fails, and is tried again.
		if err = l.kv.Delete(ctx, l.key, jetstream.LastRevision(e.Revision())); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}
