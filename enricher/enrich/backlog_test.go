package enrich

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
)

// clock is a time the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// hold waits while the stream is over the limit and messages left it within aheadStall.
func TestAheadHold(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	a := newAhead(100, clk.Now)
	step := func(what string, bytes, consumed uint64, want bool) {
		t.Helper()
		if got := a.hold(bytes, consumed); got != want {
			t.Errorf("%s: hold(%d bytes, %d consumed) = %v, want %v", what, bytes, consumed, got, want)
		}
	}
	step("under the limit", 100, 0, false)
	step("over the limit, first look", 101, 0, true)
	clk.Add(aheadStall - time.Nanosecond)
	step("over, nothing consumed for just under the stall", 500, 0, true)
	clk.Add(time.Nanosecond)
	step("over, nothing consumed for the stall: the aggregators stalled", 500, 0, false)
	step("still stalled", 500, 0, false)
	step("a message left: progress again", 500, 1, true)
	clk.Add(time.Second)
	step("under the limit again", 50, 3, false)
	if newAhead(-1, clk.Now) != nil {
		t.Error("newAhead(-1) holds; a negative limit never waits")
	}
	var never *ahead
	if d := never.wait(context.Background(), nil); d != 0 {
		t.Errorf("a nil ahead waited %s", d)
	}
}

// A look that let the workers go stands for aheadLook while what they publish keeps the
// stream under the limit: wait does not ask the stream again (it is given no JetStream here,
// which asking would need) until then.
func TestAheadLooksOncePerInterval(t *testing.T) {
	clk := &clock{t: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	a := newAhead(100, clk.Now)
	if a.recent() {
		t.Fatal("recent before any look")
	}
	a.hold(50, 0) // under the limit: go
	a.sent(50)    // exactly at the limit
	clk.Add(aheadLook - time.Nanosecond)
	if d := a.wait(context.Background(), nil); d != 0 || !a.recent() {
		t.Fatalf("wait within aheadLook of a look that went: waited %s, recent %v", d, a.recent())
	}
	a.sent(1)
	if a.recent() {
		t.Fatal("recent once what was published since the look passes the limit")
	}
	a.hold(50, 0)
	clk.Add(aheadLook)
	if a.recent() {
		t.Fatal("recent aheadLook after the look")
	}
	a.hold(500, 0) // over the limit: held, which lets nothing go
	if a.recent() {
		t.Fatal("recent after a look that held")
	}
	var never *ahead
	never.sent(1)
}

// The enricher stays within MaxAhead of a consumer that takes from USAGE_ENRICHED, and goes
// on when that consumer stalls.
func TestEnricherWaitsForTheAggregators(t *testing.T) {
	nc, js := startJetStream(t)
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	e, err := New(Config{Workers: 1, FetchBatch: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nc)
	if err != nil {
		t.Fatal(err)
	}
	e.ahead = newAhead(1, clk.Now) // any enriched message is over the limit
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const n = 4
	at := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	for i := range n {
		data, err := batch.Encode([]batch.Row{{ID: "evt-" + string(rune('a'+i)), Time: at, Received: at, Provider: "openai",
			Model: "gpt-4o", ServiceTier: event.TierStandard, Tokens: event.Tokens{Input: 10, Output: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		publishRaw(t, js, 0, data, batch.SchemaName)
	}
	enriched := func() jetstream.StreamState {
		s, err := js.Stream(ctx, stream.Enriched)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State
	}
	agg, err := js.Consumer(ctx, stream.Enriched, stream.AggregatorConsumer(0))
	if err != nil {
		t.Fatal(err)
	}
	// Each enriched message holds the enricher until the aggregator's consumer has taken it:
	// the next one appears only once the stream is empty again.
	for i := 1; i <= 2; i++ {
		testkit.Eventually(t, 30*time.Second, fmt.Sprintf("enriched message %d", i), func() bool { return enriched().LastSeq == uint64(i) })
		if st := enriched(); st.Msgs != 1 {
			t.Fatalf("after enriched message %d the stream holds %d messages, want 1 (MaxAhead 1 byte)", i, st.Msgs)
		}
		m, err := agg.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second) // progress was seen at the last look; the stall is 2s away
	}
	testkit.Eventually(t, 30*time.Second, "enriched message 3", func() bool { return enriched().LastSeq == 3 })
	// The aggregator takes nothing more: after aheadStall without progress the enricher goes
	// on and enriches the rest.
	clk.Add(aheadStall)
	testkit.Eventually(t, 30*time.Second, "every message enriched", func() bool { return enriched().LastSeq == n })
	if st := enriched(); st.Msgs != 2 {
		t.Errorf("USAGE_ENRICHED holds %d messages, want the 2 not taken", st.Msgs)
	}
}

// A publish USAGE_ENRICHED refuses for want of room is reported as the stream being full, so
// that the worker waits before it fetches more instead of pricing and refusing the whole
// backlog of USAGE_RAW over and over (68 % of a core in the soak of session 8); the raw message
// comes again later, and is enriched once there is room.
func TestProcessReportsAFullStream(t *testing.T) {
	nc, js := startJetStream(t)
	ctx := context.Background()
	e, err := New(Config{Workers: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, stream.Enriched)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	limit := cfg.MaxBytes
	cfg.MaxBytes = 64 // less than any enriched message
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	data, err := batch.Encode([]batch.Row{{ID: "evt-full", Time: at, Received: at, Provider: "openai",
		Model: "gpt-4o", ServiceTier: event.TierStandard, Tokens: event.Tokens{Input: 10, Output: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, 0, data, batch.SchemaName)
	cons, err := js.Consumer(ctx, stream.Raw, stream.EnricherConsumer)
	if err != nil {
		t.Fatal(err)
	}
	fetch := func() []jetstream.Msg {
		t.Helper()
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var msgs []jetstream.Msg
		for m := range b.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) != 1 {
			t.Fatalf("fetched %d raw messages, want 1 (%v)", len(msgs), b.Error())
		}
		return msgs
	}
	var ws workspace
	if full := e.process(ctx, fetch(), &ws, e.turns.take()); !full {
		t.Fatal("process with USAGE_ENRICHED full = false, want true")
	}
	cfg.MaxBytes = limit
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if full := e.process(ctx, fetch(), &ws, e.turns.take()); full { // the same message, redelivered after its delay
		t.Fatal("process with room = true, want false")
	}
	if st, err := js.Stream(ctx, stream.Enriched); err != nil || st.CachedInfo().State.Msgs != 1 {
		t.Fatalf("USAGE_ENRICHED: %v, %v; want the one message", st, err)
	}
}
