package stream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPartitionStable pins the partition of a few ids: changing it would send the copies of
// an event that straddle an upgrade to different partitions, past their single de-duplicator.
func TestPartitionStable(t *testing.T) {
	for id, want := range map[string]int{
		"":             1,
		"evt_1":        1,
		"evt_2":        1,
		"evt_01JDXYZ":  1,
		"chatcmpl-abc": 2,
		"évt_☃":        0,
	} {
		if got := Partition(id, DefaultPartitions); got != want {
			t.Errorf("Partition(%q, 4) = %d, want %d", id, got, want)
		}
		for range 3 {
			if got := Partition(id, DefaultPartitions); got != want {
				t.Fatalf("Partition(%q, 4) changed between calls", id)
			}
		}
	}
	if got := Partition("evt_1", 1); got != 0 {
		t.Errorf("Partition(evt_1, 1) = %d, want 0", got)
	}
}

// TestPartitionSpread checks that sequential ids, as emitters generate them, spread evenly.
func TestPartitionSpread(t *testing.T) {
	const ids, n = 10_000, DefaultPartitions
	counts := make([]int, n)
	for i := range ids {
		p := Partition(fmt.Sprintf("evt_%d", i), n)
		if p < 0 || p >= n {
			t.Fatalf("Partition() = %d, want [0, %d)", p, n)
		}
		counts[p]++
	}
	for p, c := range counts {
		if lo, hi := ids/n*95/100, ids/n*105/100; c < lo || c > hi {
			t.Errorf("partition %d holds %d of %d ids, want within [%d, %d]; all: %v", p, c, ids, lo, hi, counts)
		}
	}
}

func TestSubjects(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{RawSubject(3), "usage.raw.3"},
		{EnrichedSubject(0), "usage.enriched.0"},
		{DeadSubject("enricher"), "usage.dead.enricher"},
	} {
		if tc.got != tc.want {
			t.Errorf("subject = %q, want %q", tc.got, tc.want)
		}
	}
}

// runJetStream starts an embedded JetStream server that stops when the test ends.
func runJetStream(t testing.TB) *nats.Conn {
	t.Helper()
	s, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("start nats server: %v", err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready after 10s")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestEnsure(t *testing.T) {
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := DefaultOptions
	o.MaxBytes = 64 << 20 // the test machine's disk is not the production one

	check := func(t *testing.T) {
		t.Helper()
		want := map[string]string{Raw: "usage.raw.*", Enriched: "usage.enriched.*", Dead: "usage.dead.>", Outcomes: "outcomes.raw"}
		names := js.StreamNames(ctx)
		n := 0
		for range names.Name() {
			n++
		}
		if names.Err() != nil {
			t.Fatalf("list streams: %v", names.Err())
		}
		if n != len(want) {
			t.Fatalf("%d streams, want %d", n, len(want))
		}
		for name, subject := range want {
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			c := s.CachedInfo().Config
			if len(c.Subjects) != 1 || c.Subjects[0] != subject {
				t.Errorf("%s subjects = %v, want [%s]", name, c.Subjects, subject)
			}
			if c.Discard != jetstream.DiscardNew {
				t.Errorf("%s discard = %v, want DiscardNew", name, c.Discard)
			}
			if c.Duplicates != 2*time.Minute {
				t.Errorf("%s duplicate window = %v, want 2m", name, c.Duplicates)
			}
			if c.Retention != jetstream.LimitsPolicy || c.Storage != jetstream.FileStorage || c.Replicas != 1 ||
				c.MaxAge != 7*24*time.Hour || c.MaxBytes != 64<<20 {
				t.Errorf("%s config = %+v", name, c)
			}
		}
	}

	if err := Ensure(ctx, js, o); err != nil {
		t.Fatalf("Ensure() error = %v", err)
	}
	check(t)

	// A message published with a Nats-Msg-Id is kept once within the duplicate window.
	for range 2 {
		if _, err := js.Publish(ctx, RawSubject(1), []byte("x"), jetstream.WithMsgID("evt_1")); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	s, err := js.Stream(ctx, Raw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("%s holds %d messages after a duplicate publish, want 1", Raw, info.State.Msgs)
	}

	// Every stage calls Ensure at start-up: a second call changes nothing and keeps the data.
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatalf("second Ensure() error = %v", err)
	}
	check(t)
	if info, err = s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("after a second Ensure: %v, %d messages, want 1", err, info.State.Msgs)
	}

	// An operator sizes a stream for their volume, and someone sets DiscardOld by mistake: the
	// next stage to start keeps the sizing and puts DiscardNew back.
	cfg := s.CachedInfo().Config
	cfg.MaxBytes, cfg.MaxAge, cfg.Duplicates, cfg.Discard = 256<<20, 36*time.Hour, 10*time.Minute, jetstream.DiscardOld
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatalf("Ensure() after an operator's edit: %v", err)
	}
	s, err = js.Stream(ctx, Raw)
	if err != nil {
		t.Fatal(err)
	}
	got := s.CachedInfo().Config
	if got.MaxBytes != 256<<20 || got.MaxAge != 36*time.Hour || got.Duplicates != 10*time.Minute || got.Discard != jetstream.DiscardNew {
		t.Fatalf("after Ensure: max bytes %d, max age %v, duplicate window %v, discard %v; want 256 MiB, 36h, 10m, DiscardNew",
			got.MaxBytes, got.MaxAge, got.Duplicates, got.Discard)
	}
}
