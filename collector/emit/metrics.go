package emit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	emitted, published, dropped, invalid, retries prometheus.Counter
	spooled, replayed, spoolRefused, spoolDamaged prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, e *Emitter) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_emit_" + name, Help: help})
	}
	m := &metrics{
		emitted:      counter("events_emitted_total", "Events taken into the emitter's buffer."),
		published:    counter("events_published_total", "Events acknowledged by JetStream, replayed ones included."),
		dropped:      counter("events_dropped_total", "Events refused with ErrBufferFull or ErrSpoolFull, or not encodable."),
		invalid:      counter("events_invalid_total", "Events refused because they failed validation."),
		retries:      counter("publish_retries_total", "Batch publishes that failed (or were not attempted, the breaker being open) and are attempted again."),
		spooled:      counter("events_spooled_total", "Events written to the on-disk spool because they could not be published."),
		replayed:     counter("events_replayed_total", "Events published from the spool."),
		spoolRefused: counter("spool_full_total", "Events refused with ErrSpoolFull: the spool and the buffer were full."),
		spoolDamaged: counter("spool_damaged_total", "Torn or corrupt regions skipped when reading spool segments back."),
	}
	if reg == nil {
		return m, nil
	}
	gauge := func(name, help string, f func(Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tokenmeter_emit_" + name, Help: help},
			func() float64 { return f(e.Stats()) })
	}
	cs := []prometheus.Collector{
		m.emitted, m.published, m.dropped, m.invalid, m.retries,
		m.spooled, m.replayed, m.spoolRefused, m.spoolDamaged,
		gauge("events_buffered", "Events in memory: taken, neither acknowledged nor spooled.",
			func(s Stats) float64 { return float64(s.Buffered) }),
		gauge("spool_bytes", "Bytes in the spool's segment files.",
			func(s Stats) float64 { return float64(s.SpoolBytes) }),
		gauge("spool_messages", "Messages (batches) in the spool.",
			func(s Stats) float64 { return float64(s.SpoolMessages) }),
		gauge("spool_events", "Events in the spool.",
			func(s Stats) float64 { return float64(s.SpoolEvents) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokenmeter_emit_spool_full",
			Help: "1 while the spool refuses batches for lack of room (they are kept in memory), else 0.",
		}, func() float64 { return boolGauge(e.spoolFull.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokenmeter_emit_breaker_state",
			Help: "The publish circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, func() float64 { return float64(e.breaker.State()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register emitter metrics: %w", err)
		}
	}
	return m, nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
