package streammetrics

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// The collector reports each stream's fill and limit and each durable consumer's backlog as
// JetStream has them: 5 messages published with nobody consuming are the enricher's backlog,
// and once it takes 3 of them (acking 2) its pending and ack-pending counts say so.
func TestCollectorReportsFillAndBacklog(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := stream.DefaultOptions
	o.MaxBytes, o.HistoryMaxBytes, o.Storage = stream.MinMaxBytes, stream.MinMaxBytes, jetstream.MemoryStorage
	if err := stream.Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := js.Publish(ctx, stream.RawSubject(i%4), []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.Consumer(ctx, stream.Raw, stream.EnricherConsumer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range b.Messages() {
		if n < 2 {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		n++
	}
	if n != 3 {
		t.Fatalf("fetched %d messages, want 3", n)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(js, stream.DefaultPartitions))
	// The server counts a consumer's pending messages lazily, so right after a fetch it can
	// answer 0 for a moment (seen once in CI): wait until it has the numbers, then check all.
	enricher := func(name string) float64 { return gathered(t, reg)[name+"{consumer=enricher,stream=USAGE_RAW}"] }
	testkit.Eventually(t, 10*time.Second, "the enricher's backlog counted", func() bool {
		return enricher("tokenmeter_stream_consumer_pending_messages") == 2 && enricher("tokenmeter_stream_consumer_ack_pending_messages") == 1
	})
	// The history consumer copies on its own schedule; the enricher's numbers are exact.
	for _, c := range []struct {
		name   string
		labels string
		want   float64
	}{
		{"tokenmeter_stream_consumer_pending_messages", "consumer=enricher,stream=USAGE_RAW", 2},
		{"tokenmeter_stream_consumer_ack_pending_messages", "consumer=enricher,stream=USAGE_RAW", 1},
		{"tokenmeter_stream_max_bytes", "stream=USAGE_RAW", stream.MinMaxBytes},
		{"tokenmeter_stream_max_bytes", "stream=USAGE_HISTORY", stream.MinMaxBytes},
		{"tokenmeter_stream_info_ok", "", 1},
	} {
		if got, ok := gathered(t, reg)[c.name+"{"+c.labels+"}"]; !ok || got != c.want {
			t.Errorf("%s{%s} = %v (reported %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	backlogs := 0
	for k := range gathered(t, reg) {
		if strings.HasPrefix(k, "tokenmeter_stream_consumer_pending_messages{") {
			backlogs++
		}
	}
	// What Ensure creates: enricher, 4 aggregators, outcomes-writer, the history copiers of
	// USAGE_RAW and USAGE_ENRICHED (the alerter makes its own when it starts).
	if backlogs != 8 {
		t.Errorf("%d consumer backlogs reported, want 8: %v", backlogs, gathered(t, reg))
	}

	// NATS gone: the scrape says so, and reports nothing stale.
	nc.Close()
	if got := gathered(t, reg); len(got) != 1 || got["tokenmeter_stream_info_ok{}"] != 0 {
		t.Errorf("with NATS closed: %v, want tokenmeter_stream_info_ok 0 alone", got)
	}
}

// gathered is every sample reg gathers, by "name{label=value,…}".
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}
