package collect

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests       *prometheus.CounterVec
	accepted       prometheus.Counter
	rejected       *prometheus.CounterVec
	refused        *prometheus.CounterVec
	messages       prometheus.Counter
	publishSeconds prometheus.Histogram
	breakerOpen    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_requests_total",
			Help: "POST /v1/events requests by HTTP status.",
		}, []string{"code"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_collector_events_accepted_total",
			Help: "Events stored in USAGE_RAW and answered as accepted.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_events_rejected_total",
			Help: "Events rejected as invalid, by reason class (the field at fault, malformed, cloudevent, other).",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_events_refused_total",
			Help: "Valid events answered 429 (full) or 503 (unavailable), for the client to send again.",
		}, []string{"reason"}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_collector_messages_published_total",
			Help: "Batch messages acknowledged by JetStream.",
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenmeter_collector_publish_seconds",
			Help:    "Time to publish one request's messages and receive every acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenmeter_collector_breaker_open",
			Help: "1 while the NATS publish circuit breaker is open.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.accepted, m.rejected, m.refused, m.messages, m.publishSeconds, m.breakerOpen} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register collector metrics: %w", err)
		}
	}
	return m, nil
}
