package otlp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec
	spans       *prometheus.CounterVec
	droppedTags prometheus.Counter
	memory      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_otlp_requests_total",
			Help: "POST /v1/traces requests by HTTP status.",
		}, []string{"status"}),
		spans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_otlp_spans_total",
			Help: "Spans received: accepted (usage stored), rejected (usage span that is not a valid event), ignored (no GenAI usage).",
		}, []string{"outcome"}),
		droppedTags: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_otlp_dropped_tags_total",
			Help: "Tags from span or resource attributes dropped because they break the v1 tag rules.",
		}),
		memory: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenmeter_otlp_memory_reserved_bytes",
			Help: "Memory held for the OTLP requests being answered: bodies as read and decompressed, and an estimate of their decoded messages (bounded by MaxMemoryBytes).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.spans, m.droppedTags, m.memory} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register OTLP metrics: %w", err)
		}
	}
	return m, nil
}
