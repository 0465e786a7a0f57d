package enrich

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

func startJetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() })
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(context.Background(), js, stream.DefaultOptions); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// runEnricher starts an enricher with cfg on nc; it stops when the test ends, before the
// NATS server does.
func runEnricher(t testing.TB, nc *nats.Conn, cfg Config) *Enricher {
	t.Helper()
	e, err := New(cfg, nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func publishRaw(t testing.TB, js jetstream.JetStream, p int, data []byte, schema string) {
	t.Helper()
	m := &nats.Msg{Subject: stream.RawSubject(p), Data: data, Header: nats.Header{}}
	m.Header.Set(stream.HeaderSchema, schema)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func next(t testing.TB, js jetstream.JetStream, streamName, subject string) jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, streamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no message on %s: %v", subject, err)
	}
	return m
}

func TestEnrichPricesEveryRowAndKeepsThePartition(t *testing.T) {
	nc, js := startJetStream(t)
	runEnricher(t, nc, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	rows := []batch.Row{
		{ID: "a", Time: at, Received: at, Partition: 3, Provider: "openai", Model: "gpt-4o-2024-08-06",
			ServiceTier: event.TierStandard, Tokens: event.Tokens{Input: 1200, CachedInput: 1000, Output: 300}},
		{ID: "b", Time: at, Received: at, Partition: 3, Provider: "anthropic", Model: "claude-sonnet-4-5",
			ServiceTier: event.TierBatch, Tokens: event.Tokens{Input: 10_000, CachedInput: 2000, CacheWrite: 3000, CacheWrite1h: 1000, Output: 500}},
		{ID: "c", Time: at, Received: at, Partition: 3, Provider: "acme", Model: "acme-llm-7",
			ServiceTier: event.TierStandard, Tokens: event.Tokens{Input: 5, Output: 5}},
		{ID: "d", Time: at, Received: at, Partition: 3, Provider: "openai", Model: "gpt-4o", CacheHit: true,
			ServiceTier: event.TierStandard, Tokens: event.Tokens{Input: 100, Output: 10}},
	}
	data, err := batch.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, 3, data, batch.SchemaName)

	m := next(t, js, stream.Enriched, stream.EnrichedSubject(3))
	got, err := batch.Decode(m.Data())
	if err != nil {
		t.Fatal(err)
	}
	if id := m.Headers().Get(jetstream.MsgIDHeader); id != "enr-1" {
		t.Errorf("Nats-Msg-Id = %q, want enr-1 (derived from the raw sequence)", id)
	}
	// Prices per 1M tokens from catalog/*.yaml; 1 USD/M = 1,000,000 pico per token.
	want := []struct {
		priced         bool
		model, version string
		cost, savings  int64
	}{
		// gpt-4o: 200 uncached × 2.50 + 1000 cached × 1.25 + 300 output × 10.00
		{true, "gpt-4o", "openai/gpt-4o@2024-10-01/standard", 200*2_500_000 + 1000*1_250_000 + 300*10_000_000, 1000 * (2_500_000 - 1_250_000)},
		// claude-sonnet-4-5 batch: 5000 × 1.50 + 2000 × 0.15 + 2000 × 1.875 + 1000 × 3.00 + 500 × 7.50
		{true, "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5@2025-09-29/batch",
			5000*1_500_000 + 2000*150_000 + 2000*1_875_000 + 1000*3_000_000 + 500*7_500_000, 2000 * (1_500_000 - 150_000)},
		{false, "", "", 0, 0},
		// cache hit: free, and the avoided 100 × 2.50 + 10 × 10.00 is savings
		{true, "gpt-4o", "openai/gpt-4o@2024-10-01/standard", 0, 100*2_500_000 + 10*10_000_000},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Priced != w.priced || g.ModelPriced != w.model || g.PriceVersion != w.version || g.CostPico != w.cost || g.SavingsPico != w.savings {
			t.Errorf("row %s: got priced=%v model=%q version=%q cost=%d savings=%d, want %v %q %q %d %d",
				g.ID, g.Priced, g.ModelPriced, g.PriceVersion, g.CostPico, g.SavingsPico, w.priced, w.model, w.version, w.cost, w.savings)
		}
		if g.ID != rows[i].ID || g.Tokens != rows[i].Tokens || g.Partition != 3 {
			t.Errorf("row %d: event fields changed: %+v", i, g)
		}
	}
}

func TestEnrichQuarantinesPoisonAndKeepsGoing(t *testing.T) {
	nc, js := startJetStream(t)
	runEnricher(t, nc, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})

	publishRaw(t, js, 0, []byte("not arrow"), batch.SchemaName)
	good, err := batch.Encode([]batch.Row{{ID: "x", Time: time.Now().UTC().Truncate(time.Millisecond), Provider: "openai", Model: "gpt-4o", ServiceTier: "standard"}})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, 0, good, batch.SchemaName)

	dead := next(t, js, stream.Dead, stream.DeadSubject("enricher"))
	if got := dead.Headers().Get(stream.HeaderSource); got != "USAGE_RAW/1" {
		t.Errorf("dead-letter source = %q, want USAGE_RAW/1", got)
	}
	if got := dead.Headers().Get(stream.HeaderReason); got == "" || string(dead.Data()) != "not arrow" {
		t.Errorf("dead letter: reason %q, data %q; want a reason and the original payload", got, dead.Data())
	}
	m := next(t, js, stream.Enriched, stream.EnrichedSubject(0))
	rows, err := batch.Decode(m.Data())
	if err != nil || len(rows) != 1 || rows[0].ID != "x" || !rows[0].Priced {
		t.Fatalf("the message after the poison one: rows %+v, err %v", rows, err)
	}
}

func TestConfigValidateNamesEveryProblem(t *testing.T) {
	err := Config{Workers: 0, FetchBatch: -1, AckWait: time.Millisecond}.Validate()
	want := "-workers (0) must be at least 1\nfetch batch (-1) must be at least 1\n-ack-wait (1ms) must be at least 1s\n-pricing-poll (0s) must be at least 10ms"
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v, want %q", err, want)
	}
}
