package stream

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// streamInfo returns the current state of stream name.
func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("look up stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info
}

// consumerNames lists the consumers of stream name, sorted.
func consumerNames(t *testing.T, js jetstream.JetStream, name string) []string {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	l := s.ConsumerNames(context.Background())
	for n := range l.Name() {
		out = append(out, n)
	}
	if l.Err() != nil {
		t.Fatalf("list consumers of %s: %v", name, l.Err())
	}
	slices.Sort(out)
	return out
}

// waitFor waits until cond holds, checking every 10 ms, for up to 30 s: long enough for a
// busy machine (it once took more than 10 s there). testkit.Eventually does the same, but
// schemas, the contracts every other module imports, imports none of them.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 30s", what)
		}
		<-tick.C
	}
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
	o.MaxBytes, o.HistoryMaxBytes = 64<<20, 32<<20 // the test machine's disk is not the production one

	check := func(t *testing.T) {
		t.Helper()
		type want struct {
			subjects  string
			retention jetstream.RetentionPolicy
			discard   jetstream.DiscardPolicy
			maxBytes  int64
			maxAge    time.Duration
			consumers string
		}
		wants := map[string]want{
			Raw:      {"[usage.raw.>]", jetstream.InterestPolicy, jetstream.DiscardNew, 64 << 20, 0, "[enricher history]"},
			Enriched: {"[usage.enriched.*]", jetstream.InterestPolicy, jetstream.DiscardNew, 64 << 20, 0, "[aggregator-0 aggregator-1 aggregator-2 aggregator-3 history]"},
			Outcomes: {"[outcomes.raw]", jetstream.InterestPolicy, jetstream.DiscardNew, 64 << 20, 0, "[outcomes-writer]"},
			Dead:     {"[usage.dead.>]", jetstream.LimitsPolicy, jetstream.DiscardNew, 1 << 30, 7 * 24 * time.Hour, "[]"},
			History:  {"[]", jetstream.LimitsPolicy, jetstream.DiscardOld, 32 << 20, 7 * 24 * time.Hour, "[]"},
		}
		names := js.StreamNames(ctx)
		n := 0
		for range names.Name() {
			n++
		}
		if names.Err() != nil {
			t.Fatalf("list streams: %v", names.Err())
		}
		if n != len(wants) {
			t.Fatalf("%d streams, want %d", n, len(wants))
		}
		for name, w := range wants {
			c := streamInfo(t, js, name).Config
			got := want{fmt.Sprint(c.Subjects), c.Retention, c.Discard, c.MaxBytes, c.MaxAge, fmt.Sprint(consumerNames(t, js, name))}
			if got != w {
				t.Errorf("stream %s = %+v, want %+v", name, got, w)
			}
			if c.Storage != jetstream.FileStorage || c.Replicas != 1 {
				t.Errorf("%s storage %v replicas %d, want file, 1", name, c.Storage, c.Replicas)
			}
			if name != History && c.Duplicates != 2*time.Minute {
				t.Errorf("%s duplicate window = %v, want 2m", name, c.Duplicates)
			}
		}
	}

	if err := Ensure(ctx, js, o); err != nil {
		t.Fatalf("Ensure() error = %v", err)
	}
	check(t)

	// A message published with a Nats-Msg-Id is kept once within the duplicate window, and
	// copied into USAGE_HISTORY.
	for range 2 {
		if _, err := js.Publish(ctx, RawSubject(1), []byte("x"), jetstream.WithMsgID("evt_1")); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if got := streamInfo(t, js, Raw).State.Msgs; got != 1 {
		t.Fatalf("%s holds %d messages after a duplicate publish, want 1", Raw, got)
	}
	waitFor(t, "copy into "+History, func() bool { return streamInfo(t, js, History).State.Msgs == 1 })

	// Every stage calls Ensure at start-up: a second call changes nothing and keeps the data.
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatalf("second Ensure() error = %v", err)
	}
	check(t)
	if got := streamInfo(t, js, Raw).State.Msgs; got != 1 {
		t.Fatalf("after a second Ensure: %d messages, want 1", got)
	}

	// An operator sizes a stream for their volume, and someone sets DiscardOld and an age
	// limit by mistake: a stage started without a size keeps the operator's size and puts
	// DiscardNew and no age limit back; one started with a size applies it.
	s, err := js.Stream(ctx, Raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxBytes, cfg.MaxAge, cfg.Duplicates, cfg.Discard = 256<<20, 36*time.Hour, 10*time.Minute, jetstream.DiscardOld
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	keep := DefaultOptions
	if err := Ensure(ctx, js, keep); err != nil {
		t.Fatalf("Ensure() after an operator's edit: %v", err)
	}
	got := streamInfo(t, js, Raw).Config
	if got.MaxBytes != 256<<20 || got.MaxAge != 0 || got.Duplicates != 10*time.Minute || got.Discard != jetstream.DiscardNew || got.Retention != jetstream.InterestPolicy {
		t.Fatalf("after Ensure: max bytes %d, max age %v, duplicate window %v, discard %v, retention %v; want 256 MiB, 0, 10m, DiscardNew, interest",
			got.MaxBytes, got.MaxAge, got.Duplicates, got.Discard, got.Retention)
	}
	if h := streamInfo(t, js, History).Config; h.MaxBytes != 32<<20 {
		t.Fatalf("history max bytes %d after an Ensure without a size, want the 32 MiB it had", h.MaxBytes)
	}
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	if got := streamInfo(t, js, Raw).Config.MaxBytes; got != 64<<20 {
		t.Fatalf("max bytes %d after Ensure with -stream-max-bytes 64 MiB, want 64 MiB", got)
	}

	// A partition beyond those Ensure was told of gets its consumer from EnsurePartition.
	if err := EnsurePartition(ctx, js, 6); err != nil {
		t.Fatal(err)
	}
	want := "[aggregator-0 aggregator-1 aggregator-2 aggregator-3 aggregator-6 history]"
	if got := fmt.Sprint(consumerNames(t, js, Enriched)); got != want {
		t.Fatalf("consumers of %s = %s, want %s", Enriched, got, want)
	}
}

// TestStreamsHoldBacklogNotHistory is the failure the old layout had: with every consumer
// keeping up, ten times a stream's size flows through it without one refusal; with the
// consumer stopped the stream fills and refuses, and once it is back the backlog drains and
// publishing works again. USAGE_HISTORY keeps the newest copies within its own bound.
func TestStreamsHoldBacklogNotHistory(t *testing.T) {
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const size, msgSize = MinMaxBytes, 64 << 10
	o := DefaultOptions
	o.MaxBytes, o.HistoryMaxBytes, o.Storage = size, 2*size, jetstream.MemoryStorage
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, Raw, EnricherConsumer)
	if err != nil {
		t.Fatal(err)
	}
	// A message a stopped Consume had already pulled comes again only after the ack wait, so
	// the test's consumer waits one second, not Ensure's default, and counts each stream
	// sequence once however often it is delivered.
	c := cons.CachedInfo().Config
	c.AckWait = time.Second
	if cons, err = js.UpdateConsumer(ctx, Raw, c); err != nil {
		t.Fatal(err)
	}
	var consumed atomic.Int64
	var seen sync.Map
	consume := func() jetstream.ConsumeContext {
		cc, err := cons.Consume(func(m jetstream.Msg) {
			if md, err := m.Metadata(); err == nil {
				if _, again := seen.LoadOrStore(md.Sequence.Stream, true); !again {
					consumed.Add(1)
				}
			}
			_ = m.Ack()
		})
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}
	payload := make([]byte, msgSize)
	seq := 0
	publish := func() error {
		seq++
		_, err := js.Publish(ctx, RawSubject(seq%4), payload, jetstream.WithMsgID(fmt.Sprint("m", seq)))
		return err
	}

	// Ten times the stream's size, the consumer keeping up (the publisher waits for it now
	// and then, as a publisher slower than its consumer does).
	cc := consume()
	const n = 10 * size / msgSize
	for i := 1; i <= n; i++ {
		if err := publish(); err != nil {
			t.Fatalf("publish %d of %d (%d MiB through a %d MiB stream): %v", i, n, i*msgSize>>20, size>>20, err)
		}
		if i%64 == 0 {
			waitFor(t, "the consumer to keep up", func() bool { return consumed.Load() == int64(i) })
		}
	}
	waitFor(t, "the consumer to take everything", func() bool { return consumed.Load() == n })
	waitFor(t, "USAGE_RAW to empty", func() bool { return streamInfo(t, js, Raw).State.Msgs == 0 })
	h := streamInfo(t, js, History)
	if h.State.Bytes > 2*size || h.State.LastSeq != n || h.State.Msgs == 0 || h.State.Msgs >= n {
		t.Fatalf("history holds %d messages (%d bytes), last %d; want its newest copies within %d bytes, last %d",
			h.State.Msgs, h.State.Bytes, h.State.LastSeq, 2*size, n)
	}

	// The consumer stops: the backlog fills the stream, which then refuses.
	cc.Stop()
	var refused error
	accepted := 0
	for refused == nil {
		if refused = publish(); refused == nil {
			accepted++
		}
		if accepted > 2*size/msgSize {
			t.Fatalf("%d messages accepted with no consumer, more than the stream holds", accepted)
		}
	}
	if !strings.Contains(refused.Error(), "maximum bytes exceeded") {
		t.Fatalf("refusal = %v, want maximum bytes exceeded", refused)
	}
	seq-- // the refused message is sent again below under the same id

	// It comes back: the backlog drains and publishing is accepted again. The stopped Consume
	// may still have handed over a message or two after Stop, so the total counts, not the
	// difference from now.
	total := int64(n + accepted)
	cc = consume()
	defer cc.Stop()
	waitFor(t, "the backlog to drain", func() bool { return consumed.Load() == total })
	waitFor(t, "USAGE_RAW to empty", func() bool { return streamInfo(t, js, Raw).State.Msgs == 0 })
	if err := publish(); err != nil {
		t.Fatalf("publish after the backlog drained: %v", err)
	}
	waitFor(t, "the last message", func() bool { return consumed.Load() == total+1 })
}

// TestEnsureMigratesLimitsStreams starts from the previous layout — limits retention, full of
// consumed history, the alerter's consumer on USAGE_ENRICHED — and checks that Ensure keeps
// every message some consumer still needs and deletes the rest.
func TestEnsureMigratesLimitsStreams(t *testing.T) {
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []jetstream.StreamConfig{
		{Name: Raw, Subjects: []string{RawPrefix + "*"}, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew, MaxAge: 7 * 24 * time.Hour, MaxBytes: 64 << 20},
		{Name: Enriched, Subjects: []string{EnrichedPrefix + "*"}, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew, MaxAge: 7 * 24 * time.Hour, MaxBytes: 64 << 20},
	} {
		if _, err := js.CreateStream(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	enricher, err := js.CreateConsumer(ctx, Raw, jetstream.ConsumerConfig{Durable: EnricherConsumer, FilterSubject: RawPrefix + "*", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, Enriched, jetstream.ConsumerConfig{Durable: AlerterConsumer, FilterSubject: EnrichedPrefix + "*", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := js.Publish(ctx, RawSubject(i%4), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The enricher has taken the first six; four are its backlog.
	b, err := enricher.Fetch(6)
	if err != nil {
		t.Fatal(err)
	}
	for m := range b.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := Ensure(ctx, js, DefaultOptions); err != nil {
		t.Fatalf("Ensure() over the old layout: %v", err)
	}
	// The history consumer copies what was there into USAGE_HISTORY; then only the
	// enricher's backlog is left.
	waitFor(t, "the old history's copy", func() bool { return streamInfo(t, js, History).State.Msgs == 10 })
	waitFor(t, "consumed messages to go", func() bool { return streamInfo(t, js, Raw).State.Msgs == 4 })
	raw := streamInfo(t, js, Raw)
	if raw.Config.Retention != jetstream.InterestPolicy || raw.State.Msgs != 4 || raw.State.FirstSeq != 7 || raw.Config.MaxBytes != 64<<20 {
		t.Fatalf("USAGE_RAW after Ensure: retention %v, %d messages from %d, max bytes %d; want interest, 4 from 7, 64 MiB",
			raw.Config.Retention, raw.State.Msgs, raw.State.FirstSeq, raw.Config.MaxBytes)
	}
	if got := enricher.CachedInfo().Config.FilterSubject; got != RawPrefix+"*" {
		t.Fatalf("the old consumer's filter = %q before Ensure", got)
	}
	info, err := enricher.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.FilterSubject != RawSubjects {
		t.Fatalf("the enricher's consumer filters %q after Ensure, want it widened to %q", info.Config.FilterSubject, RawSubjects)
	}
	if got := fmt.Sprint(consumerNames(t, js, Enriched)); got != "[aggregator-0 aggregator-1 aggregator-2 aggregator-3 history]" {
		t.Fatalf("consumers of USAGE_ENRICHED = %s: the old alerter consumer must be gone", got)
	}
	// The backlog is still the enricher's, and is copied into the history.
	b, err = enricher.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for m := range b.Messages() {
		got = append(got, m.Data()...)
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, []byte{6, 7, 8, 9}) {
		t.Fatalf("the enricher's backlog after Ensure = %v, want [6 7 8 9]", got)
	}
	waitFor(t, "USAGE_RAW to empty", func() bool { return streamInfo(t, js, Raw).State.Msgs == 0 })
	if got := streamInfo(t, js, History).State.Msgs; got != 10 {
		t.Fatalf("history holds %d messages, want 10", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions.Validate(); err != nil {
		t.Fatalf("DefaultOptions.Validate() = %v", err)
	}
	o := Options{MaxBytes: 1 << 20, HistoryMaxBytes: -1, HistoryMaxAge: -time.Second}
	want := "-stream-max-bytes (1048576) must be at least 67108864 (64 MiB), or 0 for the default\n" +
		"-history-max-bytes (-1) must not be negative\n" +
		"-history-max-age (-1s) must not be negative"
	if err := o.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v, want\n%s", err, want)
	}
}
