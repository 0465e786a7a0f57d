package emit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	emitted, published, dropped, invalid, retries prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, e *Emitter) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_emit_" + name, Help: help})
	}
	m := &metrics{
		emitted:   counter("events_emitted_total", "Events taken into the emitter's buffer."),
		published: counter("events_published_total", "Events acknowledged by JetStream."),
		dropped:   counter("events_dropped_total", "Events refused with ErrBufferFull or not encodable."),
		invalid:   counter("events_invalid_total", "Events refused because they failed validation."),
		retries:   counter("publish_retries_total", "Batch publishes that failed and are attempted again."),
	}
	if reg == nil {
		return m, nil
	}
	buffered := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokenmeter_emit_events_buffered",
		Help: "Events taken but not yet acknowledged.",
	}, func() float64 { return float64(e.Stats().Buffered) })
	for _, c := range []prometheus.Collector{m.emitted, m.published, m.dropped, m.invalid, m.retries, buffered} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register emitter metrics: %w", err)
		}
	}
	return m, nil
}
