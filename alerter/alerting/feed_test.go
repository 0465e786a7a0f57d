package alerting

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

const quietRules = `
builtins: {unpriced_model: false, untagged_share: false, team_spike: false, tier_fallback: false}
`

// publishBatches publishes n one-event batches with ids prefix0…, and returns their
// USAGE_ENRICHED sequences.
func publishBatches(t *testing.T, e *env, prefix string, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := range n {
		data, err := batch.Encode([]batch.Row{{ID: prefix + strconv.Itoa(i), Time: e.clock.Now(), Team: "search", Model: "gpt-4o", Priced: true, CostPico: 1}})
		if err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: stream.EnrichedSubject(0), Data: data, Header: nats.Header{}}
		m.Header.Set(stream.HeaderSchema, batch.SchemaName)
		ack, err := e.js.PublishMsg(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	return seqs
}

// counted waits until the alerter has counted exactly want events, and checks that it
// read none twice: the feed's exactness must not rest on the seen set.
func counted(t *testing.T, a *Alerter, want float64) {
	t.Helper()
	testkit.EventuallyEquals(t, 20*time.Second, "events counted", want, func() float64 { return testutil.ToFloat64(a.m.events) })
	if d := testutil.ToFloat64(a.m.duplicates); d != 0 {
		t.Errorf("%v events read twice", d)
	}
}

// liveInfo is the live consumer's info, or nil when there is none.
func liveInfo(t *testing.T, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), stream.Enriched, LiveConsumerName)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

func waitLive(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, "the live consumer exists", func() bool { return liveInfo(t, js) != nil })
}

// aggregate stands in for the aggregator of partition 0: it acknowledges everything, so
// that what USAGE_ENRICHED keeps is what the alerter holds.
func aggregate(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	c, err := js.Consumer(context.Background(), stream.Enriched, stream.AggregatorConsumer(0))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) { _ = m.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
}

func enrichedMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream.Enriched)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// TestFeedReadsTheHistoryThenLive: at start-up the batches stored before are read from
// USAGE_HISTORY, later ones live from USAGE_ENRICHED, each once; the consumer an earlier
// alerter left on the history is deleted; the live consumer acknowledges nothing, and is
// deleted when the alerter stops.
func TestFeedReadsTheHistoryThenLive(t *testing.T) {
	e := newEnv(t, quietRules)
	if _, err := e.js.CreateConsumer(context.Background(), stream.History, jetstream.ConsumerConfig{
		Durable: stream.AlerterConsumer, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: stream.EnrichedPrefix + "*",
	}); err != nil {
		t.Fatal(err)
	}
	before := publishBatches(t, e, "before-", 5)
	a, stop := e.start()
	counted(t, a, 5)
	waitLive(t, e.js)
	publishBatches(t, e, "after-", 7)
	counted(t, a, 12)

	for reason, want := range map[string]float64{"start": 1, "behind": 0, "lost": 0} {
		if got := testutil.ToFloat64(a.m.catchUps.WithLabelValues(reason)); got != want {
			t.Errorf("catch-ups %q = %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(a.m.missed); got != 0 {
		t.Errorf("batches missed = %v, want 0", got)
	}
	info := liveInfo(t, e.js)
	if info.Config.AckPolicy != jetstream.AckNonePolicy || info.Config.InactiveThreshold != DefaultLiveInactive {
		t.Errorf("live consumer: ack policy %v, inactive threshold %s", info.Config.AckPolicy, info.Config.InactiveThreshold)
	}
	if info.Delivered.Stream != before[4]+7 {
		t.Errorf("live consumer delivered up to %d, want %d", info.Delivered.Stream, before[4]+7)
	}
	if _, err := e.js.Consumer(context.Background(), stream.History, stream.AlerterConsumer); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the earlier alerter's consumer on %s: %v, want it deleted", stream.History, err)
	}
	// An alerter that stops deletes its live consumer: it holds nothing back for LiveInactive.
	stop()
	if info := liveInfo(t, e.js); info != nil {
		t.Errorf("a stopped alerter left its live consumer: %+v", info)
	}
}

// TestFeedLetsGoWhenBehind: an alerter that cannot keep up deletes its live consumer, which
// lets go of what it held, and reads those batches from the history, while more are
// published; every event is counted once.
func TestFeedLetsGoWhenBehind(t *testing.T) {
	e := newEnv(t, quietRules)
	a, _ := e.startWith(e.nc, func(c *Config) { c.LiveMaxPending = 8 })
	waitLive(t, e.js)
	for round := range 10 {
		a.decodeMu.Lock() // the alerter is busy while a burst comes
		publishBatches(t, e, fmt.Sprintf("r%d-", round), 30)
		a.decodeMu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	counted(t, a, 300)
	if got := testutil.ToFloat64(a.m.catchUps.WithLabelValues("behind")); got < 1 {
		t.Errorf("catch-ups after falling behind = %v, want at least 1", got)
	}
	if got := testutil.ToFloat64(a.m.catchUps.WithLabelValues("lost")); got != 0 {
		t.Errorf("catch-ups after losing the live consumer = %v, want 0", got)
	}
	if got := testutil.ToFloat64(a.m.missed); got != 0 {
		t.Errorf("batches missed = %v, want 0", got)
	}
	// Caught up, it reads live again.
	waitLive(t, e.js)
	publishBatches(t, e, "late-", 3)
	counted(t, a, 303)
}

// TestStoppedAlerterLetsGoOfUsageEnriched: an alerter that dies without deleting its live
// consumer holds USAGE_ENRICHED back for LiveInactive, no longer; the next one counts every
// batch once from the history.
func TestStoppedAlerterLetsGoOfUsageEnriched(t *testing.T) {
	e := newEnv(t, quietRules)
	aggregate(t, e.js)
	nc := natstest.Connect(t, e.ns)
	a, _ := e.startWith(nc, func(c *Config) { c.LiveInactive = time.Second })
	waitLive(t, e.js)
	publishBatches(t, e, "a-", 5)
	counted(t, a, 5)
	testkit.EventuallyEquals(t, 10*time.Second, "USAGE_ENRICHED messages", 0, func() uint64 { return enrichedMsgs(t, e.js) })
	if got := testutil.ToFloat64(a.m.catchUps.WithLabelValues("lost")); got != 0 {
		t.Errorf("catch-ups after losing the live consumer = %v, want 0", got)
	}

	nc.Close() // the alerter is gone without a word; its live consumer stays
	publishBatches(t, e, "b-", 20)
	testkit.Eventually(t, 10*time.Second, "the server deletes the live consumer", func() bool { return liveInfo(t, e.js) == nil })
	testkit.EventuallyEquals(t, 10*time.Second, "USAGE_ENRICHED messages", 0, func() uint64 { return enrichedMsgs(t, e.js) })

	a, _ = e.start()
	counted(t, a, 25)
}

// TestFeedGivesUpWhatTheHistoryLost: a batch the alerter must read from the history, whose
// copy is gone, is given up after reading further back, and counted as missed; the rest
// count once.
func TestFeedGivesUpWhatTheHistoryLost(t *testing.T) {
	e := newEnv(t, quietRules)
	a, _ := e.startWith(e.nc, func(c *Config) { c.LiveMaxPending = 8 })
	waitLive(t, e.js)
	a.decodeMu.Lock()
	seqs := publishBatches(t, e, "g-", 40)
	hist, err := e.js.Stream(context.Background(), stream.History)
	if err != nil {
		t.Fatal(err)
	}
	// Find the copy of the 21st batch and delete it.
	var copySeq uint64
	testkit.Eventually(t, 10*time.Second, "the history holds the copy", func() bool {
		info, err := hist.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for s := info.State.FirstSeq; s <= info.State.LastSeq; s++ {
			m, err := hist.GetMsg(context.Background(), s)
			if err != nil {
				continue
			}
			if src, ok := sourceSeq(m.Header); ok && src == seqs[20] && m.Subject == stream.EnrichedSubject(0) {
				copySeq = s
				return true
			}
		}
		return false
	})
	if err := hist.DeleteMsg(context.Background(), copySeq); err != nil {
		t.Fatal(err)
	}
	a.decodeMu.Unlock()
	counted(t, a, 39)
	if got := testutil.ToFloat64(a.m.missed); got != 1 {
		t.Errorf("batches missed = %v, want 1", got)
	}
}

// TestFeedNoticesBatchesSentElsewhere: batches of alerter-live that another reader took (an
// alerter starting while this one stops) are read from the history; every event counts once.
func TestFeedNoticesBatchesSentElsewhere(t *testing.T) {
	e := newEnv(t, quietRules)
	a, _ := e.startWith(e.nc, func(c *Config) { c.LiveMaxPending = 8 })
	waitLive(t, e.js)
	a.decodeMu.Lock()
	publishBatches(t, e, "s-", 6)
	live, err := e.js.Consumer(context.Background(), stream.Enriched, LiveConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	b, err := live.Fetch(3, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for range b.Messages() {
		taken++
	}
	a.decodeMu.Unlock()
	if taken == 0 {
		t.Fatal("the test took no batch from alerter-live")
	}
	counted(t, a, 6)
	if got := testutil.ToFloat64(a.m.catchUps.WithLabelValues("lost")); got < 1 {
		t.Errorf("catch-ups after a skipped batch = %v, want at least 1", got)
	}
}

// TestFeedReadsTheHistoryWithoutTheGrant: an alerter whose identity may not create
// alerter-live (an upgrade whose auth.conf was not rewritten) reads the history instead, and
// still counts every event once.
func TestFeedReadsTheHistoryWithoutTheGrant(t *testing.T) {
	live := "$JS.API.CONSUMER.CREATE." + stream.Enriched + "." + LiveConsumerName
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "alerter", Password: "alerter", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{live, live + ".>"}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server is not ready after 10s")
	}
	t.Cleanup(ns.Shutdown)
	connect := func(user string) *nats.Conn {
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, user))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	e := newEnvOn(t, ns, connect("admin"), quietRules)
	publishBatches(t, e, "before-", 4)
	a, _ := e.startWith(connect("alerter"), nil)
	counted(t, a, 4)
	publishBatches(t, e, "after-", 5)
	counted(t, a, 9)
	if got := testutil.ToFloat64(a.m.historyOnly); got != 1 {
		t.Errorf("tokenmeter_alerter_history_only = %v, want 1", got)
	}
	if info := liveInfo(t, e.js); info != nil {
		t.Errorf("a live consumer exists: %+v", info)
	}
}

func TestSourceSeq(t *testing.T) {
	for _, c := range []struct {
		header string
		want   uint64
		ok     bool
	}{
		{"USAGE_ENRICHED 42 > >", 42, true},
		{"USAGE_ENRICHED:abcd 7 usage.enriched.* > usage.enriched.3", 7, true},
		{"$JS.ACK.USAGE_ENRICHED.history.1.99.5.1700000000.0", 99, true},
		{"$JS.ACK.hub.ACCHASH.USAGE_ENRICHED.history.1.12.5.1700000000.0.rand", 12, true},
		{"", 0, false},
		{"USAGE_ENRICHED", 0, false},
		{"USAGE_ENRICHED 0 > >", 0, false},
		{"USAGE_ENRICHED -3 > >", 0, false},
		{"USAGE_ENRICHED 18446744073709551616 > >", 0, false},
		{"$JS.ACK.a.b", 0, false},
	} {
		h := nats.Header{}
		if c.header != "" {
			h.Set(streamSourceHeader, c.header)
		}
		got, ok := sourceSeq(h)
		if got != c.want || ok != c.ok {
			t.Errorf("sourceSeq(%q) = %d, %v; want %d, %v", c.header, got, ok, c.want, c.ok)
		}
	}
}

// TestSourceSeqOfRealCopies reads the header the server writes on the history's copies.
func TestSourceSeqOfRealCopies(t *testing.T) {
	e := newEnv(t, quietRules)
	seqs := publishBatches(t, e, "c-", 3)
	hist, err := e.js.Stream(context.Background(), stream.History)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	testkit.Eventually(t, 10*time.Second, "three copies", func() bool {
		got = got[:0]
		for s := uint64(1); s <= 3; s++ {
			m, err := hist.GetMsg(context.Background(), s)
			if err != nil {
				return false
			}
			src, ok := sourceSeq(m.Header)
			if !ok {
				t.Fatalf("copy %d: no source sequence in %q", s, m.Header.Get(streamSourceHeader))
			}
			got = append(got, src)
		}
		return true
	})
	if fmt.Sprint(got) != fmt.Sprint(seqs) {
		t.Errorf("source sequences %v, want %v", got, seqs)
	}
}

func FuzzSourceSeq(f *testing.F) {
	for _, s := range []string{"USAGE_ENRICHED 42 > >", "$JS.ACK.S.c.1.99.5.1.0", "$JS.ACK.d.h.S.c.1.12.5.1.0.r", " 1", "a  b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := nats.Header{}
		h.Set(streamSourceHeader, v)
		seq, ok := sourceSeq(h)
		if ok != (seq > 0) {
			t.Fatalf("sourceSeq(%q) = %d, %v", v, seq, ok)
		}
	})
}
