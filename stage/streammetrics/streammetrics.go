// Package streammetrics exports, for Prometheus, how full the pipeline's streams are and how far
// behind each durable consumer is.
package streammetrics

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Collector reports, at each scrape, how full tokenmeter's streams are and how far behind
// each durable consumer is, as JetStream answers (within Timeout): what an operator alerts on
// before publishers are refused (a working stream near its -stream-max-bytes) and when a stage
// has stopped taking its messages (deploy/prometheus).
type Collector struct {
	js         jetstream.JetStream
	partitions int
	// Timeout bounds the JetStream requests of one scrape (default 2 s).
	Timeout time.Duration

	up, bytes, maxBytes, msgs, pending, ackPending *prometheus.Desc
}

// NewCollector returns a collector reading through js, for a pipeline of the given number of
// partitions. It asks only what Ensure's callers may ask (stream info, and the info of the
// durable consumers Ensure creates), so any stage's NATS identity can run it.
func NewCollector(js jetstream.JetStream, partitions int) *Collector {
	sc := []string{"stream"}
	cc := []string{"stream", "consumer"}
	return &Collector{
		js: js, partitions: partitions, Timeout: 2 * time.Second,
		up:       prometheus.NewDesc("tokenmeter_stream_info_ok", "1 when JetStream answered this scrape's stream and consumer requests, 0 when it did not (the other tokenmeter_stream_ series are then missing).", nil, nil),
		bytes:    prometheus.NewDesc("tokenmeter_stream_bytes", "Bytes the stream holds.", sc, nil),
		maxBytes: prometheus.NewDesc("tokenmeter_stream_max_bytes", "The stream's byte limit (-stream-max-bytes, -history-max-bytes); a working stream that reaches it refuses publishers (429).", sc, nil),
		msgs:     prometheus.NewDesc("tokenmeter_stream_messages", "Messages the stream holds.", sc, nil),
		pending:  prometheus.NewDesc("tokenmeter_stream_consumer_pending_messages", "Messages of the stream the durable consumer has not been delivered yet: its backlog.", cc, nil),
		ackPending: prometheus.NewDesc("tokenmeter_stream_consumer_ack_pending_messages",
			"Messages delivered to the durable consumer and not yet acknowledged.", cc, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.bytes, c.maxBytes, c.msgs, c.pending, c.ackPending} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	ok := 1.0
	for _, name := range []string{stream.Raw, stream.Enriched, stream.Outcomes, stream.History, stream.Dead} {
		st, err := c.js.Stream(ctx, name)
		if err != nil {
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				ok = 0
			}
			continue
		}
		info := st.CachedInfo()
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(info.State.Bytes), name)
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(info.State.Msgs), name)
		if info.Config.MaxBytes > 0 {
			ch <- prometheus.MustNewConstMetric(c.maxBytes, prometheus.GaugeValue, float64(info.Config.MaxBytes), name)
		}
		for _, consumer := range c.durables(name) {
			ci, err := consumerInfo(ctx, st, consumer)
			if err != nil {
				if !errors.Is(err, jetstream.ErrConsumerNotFound) {
					ok = 0
				}
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(ci.NumPending), name, consumer)
			ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(ci.NumAckPending), name, consumer)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, ok)
}

// durables are the durable consumers of stream name that Ensure creates.
func (c *Collector) durables(name string) []string {
	switch name {
	case stream.Raw:
		return []string{stream.EnricherConsumer, stream.HistoryConsumer}
	case stream.Enriched:
		out := []string{stream.HistoryConsumer}
		for p := range c.partitions {
			out = append(out, stream.AggregatorConsumer(p))
		}
		return out
	case stream.Outcomes:
		return []string{stream.OutcomesConsumer}
	}
	return nil
}

// consumerInfo is the info of a durable consumer, pull (the stages') or push (the history
// copiers, which the server itself reads).
func consumerInfo(ctx context.Context, st jetstream.Stream, name string) (*jetstream.ConsumerInfo, error) {
	cons, err := st.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrNotPullConsumer) {
		push, err := st.PushConsumer(ctx, name)
		if err != nil {
			return nil, err
		}
		return push.CachedInfo(), nil
	}
	if err != nil {
		return nil, err
	}
	return cons.CachedInfo(), nil
}
