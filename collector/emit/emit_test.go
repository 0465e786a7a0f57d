package emit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

func usage(i int) event.Usage {
	return event.Usage{
		ID: fmt.Sprintf("evt-%06d", i), Provider: "openai", Model: "gpt-4o",
		Usage: event.Tokens{Input: int64(100 + i), Output: 10},
		Tags:  map[string]string{event.TagTeam: "search"},
	}
}

// storedIDs returns the event ids of every row in USAGE_RAW, sorted, after checking that
// each row sits on its partition's subject.
func storedIDs(tb testing.TB, js jetstream.JetStream) []string {
	tb.Helper()
	return storedIDsOn(tb, js, "")
}

// storedIDsOn is storedIDs of an emitter named name: its partitions' subjects are
// usage.raw.<p>.<name>.
func storedIDsOn(tb testing.TB, js jetstream.JetStream, name string) []string {
	tb.Helper()
	var ids []string
	for _, m := range streamtest.Messages(tb, js, stream.Raw) {
		for _, r := range m.Rows {
			if want := stream.EmitterRawSubject(stream.Partition(r.ID, stream.DefaultPartitions), name); m.Subject != want || r.Partition != stream.Partition(r.ID, stream.DefaultPartitions) {
				tb.Errorf("event %s is on %s (partition %d), want %s", r.ID, m.Subject, r.Partition, want)
			}
			ids = append(ids, r.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

func wantIDs(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, usage(i).ID)
	}
	return ids
}

func equalIDs(tb testing.TB, got, want []string) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("stored %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			tb.Fatalf("stored event %d is %s, want %s (a duplicate or a loss)", i, got[i], want[i])
		}
	}
}

func newEmitter(tb testing.TB, nc *nats.Conn, opts Options) *Emitter {
	tb.Helper()
	e, err := New(nc, opts)
	if err != nil {
		tb.Fatalf("new emitter: %v", err)
	}
	return e
}

func TestEmitDeliversEveryEventOnce(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	e := newEmitter(t, nc, Options{BatchSize: 500})
	const n = 2500
	for i := range n {
		if err := e.Emit(usage(i)); err != nil {
			t.Fatalf("Emit(%d): %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	equalIDs(t, storedIDs(t, js), wantIDs(0, n))
	if got, want := e.Stats(), (Stats{Emitted: n, Published: n}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if err := e.Emit(usage(n)); !errors.Is(err, ErrClosed) {
		t.Errorf("Emit after Close = %v, want ErrClosed", err)
	}
}

func TestEmitFlushesPartialBatches(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	t.Run("on the interval", func(t *testing.T) {
		e := newEmitter(t, nc, Options{FlushInterval: 20 * time.Millisecond})
		defer e.Close(context.Background())
		for i := range 5 {
			if err := e.Emit(usage(i)); err != nil {
				t.Fatal(err)
			}
		}
		testkit.Eventually(t, 5*time.Second, "5 events published", func() bool { return e.Stats().Published == 5 })
		equalIDs(t, storedIDs(t, js), wantIDs(0, 5))
	})
	t.Run("on Close", func(t *testing.T) {
		e := newEmitter(t, nc, Options{FlushInterval: time.Hour})
		for i := 5; i < 12; i++ {
			if err := e.Emit(usage(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		equalIDs(t, storedIDs(t, js), wantIDs(0, 12))
	})
}

func TestEmitInvalid(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	e := newEmitter(t, nc, Options{})
	defer e.Close(context.Background())
	u := usage(1)
	u.Usage.CachedInput = 1000
	err := e.Emit(u)
	var fe *event.FieldError
	want := `emit usage event "evt-000001": usage: cached_input_tokens (1000) + cache_write_tokens (0) exceed input_tokens (101), which includes them`
	if !errors.As(err, &fe) || err.Error() != want {
		t.Errorf("Emit = %v, want a FieldError %q", err, want)
	}
	if got := e.Stats(); got != (Stats{Invalid: 1}) {
		t.Errorf("Stats() = %+v, want only Invalid: 1", got)
	}
}

func TestEmitBufferFullWhenNATSDown(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, nil)
	s.Shutdown()
	testkit.Eventually(t, 5*time.Second, "the client sees the server gone", func() bool { return !nc.IsConnected() })

	e := newEmitter(t, nc, Options{MaxBuffered: 10, BatchSize: 4, FlushInterval: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	start := time.Now()
	for i := range 10 {
		if err := e.Emit(usage(i)); err != nil {
			t.Fatalf("Emit(%d): %v", i, err)
		}
	}
	for i := 10; i < 13; i++ {
		if err := e.Emit(usage(i)); !errors.Is(err, ErrBufferFull) {
			t.Fatalf("Emit(%d) = %v, want ErrBufferFull", i, err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("13 Emit calls took %s with NATS down; Emit must not block", d)
	}
	testkit.Eventually(t, 5*time.Second, "a retry", func() bool { return e.Stats().Retries > 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := e.Close(ctx)
	if want := "close emitter: 10 events not delivered: context deadline exceeded"; err == nil || err.Error() != want {
		t.Errorf("Close = %v, want %s", err, want)
	}
	st := e.Stats()
	if st.Emitted != 10 || st.Dropped != 3 || st.Published != 0 || st.Buffered != 10 {
		t.Errorf("Stats() = %+v, want Emitted 10, Dropped 3, Published 0, Buffered 10", st)
	}
}

// TestEmitSurvivesOutage publishes before, during and after a NATS outage shorter than the
// retry loop: every event arrives exactly once once the server is back.
func TestEmitSurvivesOutage(t *testing.T) {
	dir := t.TempDir()
	s := natstest.Start(t, dir, -1)
	port := natstest.Port(t, s)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	e := newEmitter(t, nc, Options{BatchSize: 50, FlushInterval: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, PublishTimeout: time.Second})

	emit := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := e.Emit(usage(i)); err != nil {
				t.Fatalf("Emit(%d): %v", i, err)
			}
		}
	}
	emit(0, 100)
	testkit.Eventually(t, 5*time.Second, "100 events published", func() bool { return e.Stats().Published == 100 })

	s.Shutdown()
	emit(100, 300)
	testkit.Eventually(t, 5*time.Second, "retries during the outage", func() bool { return e.Stats().Retries >= 3 })

	natstest.Start(t, dir, port)
	emit(300, 350)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	equalIDs(t, storedIDs(t, js), wantIDs(0, 350))
	if st := e.Stats(); st.Emitted != 350 || st.Published != 350 || st.Buffered != 0 || st.Dropped != 0 {
		t.Errorf("Stats() = %+v, want Emitted and Published 350, nothing buffered or dropped", st)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("zero Options: %v, want nil (all defaults)", err)
	}
	err := Options{Partitions: -1, MaxBuffered: -1, BatchSize: -1, FlushInterval: -1, MaxBackoff: time.Millisecond}.Validate()
	want := strings.Join([]string{
		"partitions (-1) must be positive",
		"max buffered (-1) must be positive",
		"batch size (-1) must be positive",
		"flush interval (-1ns) must be positive",
		"max backoff (1ms) must be at least 50ms",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
}
