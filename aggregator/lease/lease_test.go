package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

func bucket(tb testing.TB, ttl time.Duration) jetstream.KeyValue {
	tb.Helper()
	nc := natstest.Connect(tb, natstest.Start(tb, tb.TempDir(), -1))
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	bucket, got, err := Open(context.Background(), js, ttl)
	if err != nil || got != ttl {
		tb.Fatalf("Open: TTL %v, %v; want %v", got, err, ttl)
	}
	return bucket
}

// acquireNow takes l or fails with what Acquire reported on its first try.
func acquireNow(tb testing.TB, l *Lease) error {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first error
	err := l.Acquire(ctx, func(err error) {
		first = err
		cancel()
	})
	if err != nil {
		return first
	}
	return nil
}

func holder(tb testing.TB, bucket jetstream.KeyValue, p int) string {
	tb.Helper()
	e, err := bucket.Get(context.Background(), Key(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ""
	}
	if err != nil {
		tb.Fatal(err)
	}
	return string(e.Value())
}

// One holder at a time; the same holder name takes its lease back; a release hands it over.
func TestOneHolderAtATime(t *testing.T) {
	bucket := bucket(t, DefaultTTL)
	a := New(bucket, 3, "host-a", DefaultTTL, time.Now)
	b := New(bucket, 3, "host-b", DefaultTTL, time.Now)
	if err := acquireNow(t, a); err != nil {
		t.Fatalf("a: %v", err)
	}
	if !a.Held() || holder(t, bucket, 3) != "host-a" {
		t.Fatalf("after a's Acquire: Held %v, holder %q", a.Held(), holder(t, bucket, 3))
	}
	err := acquireNow(t, b)
	var other *HeldByOtherError
	if !errors.As(err, &other) || err.Error() != `the lease partition-3 is held by "host-a"; waiting for it to be released or to expire` {
		t.Fatalf("b while a holds it: %v", err)
	}
	if b.Held() {
		t.Fatal("b holds a lease it waits for")
	}
	// a restarted (a new Lease value under the same name) takes it back at once.
	a2 := New(bucket, 3, "host-a", DefaultTTL, time.Now)
	if err := acquireNow(t, a2); err != nil {
		t.Fatalf("a restarted: %v", err)
	}
	// The first a's entry is gone: renewing it finds the lease lost.
	if err := a.Renew(context.Background()); !errors.Is(err, ErrLost) || a.Held() {
		t.Fatalf("renewing a superseded lease: %v, Held %v; want ErrLost, false", err, a.Held())
	}
	a2.Release()
	if a2.Held() || holder(t, bucket, 3) != "" {
		t.Fatalf("after Release: Held %v, holder %q", a2.Held(), holder(t, bucket, 3))
	}
	if err := acquireNow(t, b); err != nil || !b.Held() {
		t.Fatalf("b after the release: %v, Held %v", err, b.Held())
	}
	// A release of a lease no longer ours leaves the new holder's entry alone.
	a2.Release()
	if got := holder(t, bucket, 3); got != "host-b" {
		t.Errorf("holder after a stale release = %q, want host-b", got)
	}
}

// Held turns false a third of the TTL after the last renewal, before the server drops the
// entry; renewing keeps it.
func TestHeldLapsesWithoutRenewal(t *testing.T) {
	bucket := bucket(t, DefaultTTL)
	now := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	l := New(bucket, 0, "host-a", DefaultTTL, func() time.Time { return now })
	if err := acquireNow(t, l); err != nil {
		t.Fatal(err)
	}
	now = now.Add(DefaultTTL*2/3 - time.Millisecond)
	if !l.Held() {
		t.Fatal("not held just before two thirds of the TTL")
	}
	if err := l.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(DefaultTTL*2/3 - time.Millisecond)
	if !l.Held() {
		t.Fatal("not held after a renewal")
	}
	now = now.Add(time.Millisecond)
	if l.Held() {
		t.Fatal("held two thirds of the TTL after the last renewal")
	}
}

// An entry whose holder died expires with the bucket's TTL, and another holder takes it.
func TestDeadHoldersLeaseExpires(t *testing.T) {
	const ttl = time.Second
	bucket := bucket(t, ttl)
	dead := New(bucket, 1, "host-dead", ttl, time.Now)
	if err := acquireNow(t, dead); err != nil {
		t.Fatal(err)
	}
	next := New(bucket, 1, "host-next", ttl, time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waits := 0
	if err := next.Acquire(ctx, func(error) { waits++ }); err != nil {
		t.Fatalf("the lease of a dead holder did not expire: %v", err)
	}
	if waits == 0 || holder(t, bucket, 1) != "host-next" {
		t.Errorf("waits %d, holder %q; want some, host-next", waits, holder(t, bucket, 1))
	}
}

// A bucket made without a TTL would let a dead writer hold its partitions for ever: Open
// refuses it; one made with another TTL is used with that TTL.
func TestOpenTakesTheBucketsTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl     time.Duration
		wantErr string
	}{
		{0, "KV bucket tokenmeter_aggregator_leases has no TTL; delete it (nats kv rm tokenmeter_aggregator_leases) so that it is created with one"},
		{time.Minute, ""},
	} {
		nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: kv.Leases, TTL: tc.ttl}); err != nil {
			t.Fatal(err)
		}
		_, got, err := Open(context.Background(), js, DefaultTTL)
		switch {
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("TTL %v: Open error %v, want %q", tc.ttl, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.ttl):
			t.Errorf("TTL %v: Open gave TTL %v, %v; want %v", tc.ttl, got, err, tc.ttl)
		}
	}
}

// A renewal that landed although its caller timed out leaves the entry a revision ahead,
// still naming the holder: the next renewal keeps the lease (it once reported it taken, and
// the aggregator stopped writing to reload its sets, for 93 s in the soak). Another holder's
// name there means it was taken.
func TestRenewalWhoseAnswerWasLost(t *testing.T) {
	bucket := bucket(t, DefaultTTL)
	a := New(bucket, 1, "host-a", DefaultTTL, time.Now)
	if err := acquireNow(t, a); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	renewalLandsUnanswered(t, bucket, a, 1)
	if err := a.Renew(ctx); err != nil {
		t.Fatalf("Renew after a renewal that landed unanswered: %v, want the lease kept", err)
	}
	if !a.Held() || holder(t, bucket, 1) != "host-a" {
		t.Fatalf("Held() = %t, holder %q; want host-a to hold it", a.Held(), holder(t, bucket, 1))
	}
	e, err := bucket.Get(ctx, Key(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Update(ctx, Key(1), []byte("host-b"), e.Revision()); err != nil { // taken
		t.Fatal(err)
	}
	if err := a.Renew(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("Renew after host-b took the entry: %v, want ErrLost", err)
	}
}

// A release right after a renewal that was stopped in flight — the writer stopping cancels
// its renewals — finds the entry a revision ahead when the renewal landed all the same, and
// deletes it still: a graceful stop hands the partition over at once (make cluster's
// aggregator moved by SIGTERM once left it to expire, 17.9 s instead of 2.9 s). A superseded
// lease of the same name whose renewals were answered leaves the new entry alone.
func TestReleaseAfterRenewalWhoseAnswerWasLost(t *testing.T) {
	bucket := bucket(t, DefaultTTL)
	a := New(bucket, 2, "host-a", DefaultTTL, time.Now)
	if err := acquireNow(t, a); err != nil {
		t.Fatal(err)
	}
	renewalLandsUnanswered(t, bucket, a, 2)
	a.Release()
	if a.Held() || holder(t, bucket, 2) != "" {
		t.Fatalf("after Release: Held %v, holder %q; want the entry gone", a.Held(), holder(t, bucket, 2))
	}

	old := New(bucket, 2, "host-a", DefaultTTL, time.Now)
	if err := acquireNow(t, old); err != nil {
		t.Fatal(err)
	}
	restarted := New(bucket, 2, "host-a", DefaultTTL, time.Now)
	if err := acquireNow(t, restarted); err != nil {
		t.Fatal(err)
	}
	old.Release()
	if !restarted.Held() || holder(t, bucket, 2) != "host-a" {
		t.Fatalf("after the superseded lease's Release: Held %v, holder %q; want the restarted one's entry kept", restarted.Held(), holder(t, bucket, 2))
	}
}

// renewalLandsUnanswered renews l, partition p's lease, with no time for an answer, and then
// lands that renewal on the server as a timed-out or stopped request may.
func renewalLandsUnanswered(tb testing.TB, bucket jetstream.KeyValue, l *Lease, p int) {
	tb.Helper()
	ctx := context.Background()
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Renew(stopped); err == nil || errors.Is(err, ErrLost) {
		tb.Fatalf("Renew without time to answer: %v, want a failure that is not ErrLost", err)
	}
	e, err := bucket.Get(ctx, Key(p))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := bucket.Update(ctx, Key(p), []byte(l.holder), e.Revision()); err != nil {
		tb.Fatal(err)
	}
}

// A writer stopping cancels its renewals and releases its lease at once, as the aggregator's
// worker does, at every moment of the renewal cycle, on a 3-node cluster (R3 bucket): the
// entry is gone every time. A renewal in flight at the stop lands unanswered; before the fix
// about one lease in ten stayed to expire, and a replica a moment behind answered the
// retry's Get with the revision before it.
func TestReleaseWhileRenewingOnACluster(t *testing.T) {
	const renewTTL = 50 * time.Millisecond // a renewal every 10 ms; the bucket keeps entries a minute
	c := natstest.StartCluster(t, 3)
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bucket, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: kv.Leases, History: 1, TTL: time.Minute, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for p := range n {
		l := New(bucket, p, "host-a", renewTTL, time.Now)
		if err := acquireNow(t, l); err != nil {
			t.Fatal(err)
		}
		renewCtx, stopRenewing := context.WithCancel(ctx)
		renewing := make(chan struct{})
		go func() {
			defer close(renewing)
			l.RenewEvery(renewCtx, func(error) {}, func(error) {})
		}()
		time.Sleep(20*time.Millisecond + time.Duration(p%10)*time.Millisecond)
		stopRenewing()
		l.Release()
		<-renewing
	}
	for p := range n {
		testkit.Eventually(t, 10*time.Second, "lease "+Key(p)+" released", func() bool { return holder(t, bucket, p) == "" })
	}
}
