package aggregate

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	rows       prometheus.Counter
	duplicates prometheus.Counter
	// responseDuplicates counts second reports of one provider response under another id.
	responseDuplicates prometheus.Counter
	// displaced counts stored reports taken out of the roll-ups for one of higher rank.
	displaced prometheus.Counter
	// stuckKilled counts INSERTs killed as stuck (awaitNoInserts).
	stuckKilled prometheus.Counter
	conflicts   prometheus.Counter
	inserts     *prometheus.CounterVec
	insertSecs  prometheus.Histogram
	poison      prometheus.Counter
	breaker     prometheus.Gauge
	dedupIDs    *prometheus.GaugeVec
	// dedupResponses is the size of the response sets.
	dedupResponses *prometheus.GaugeVec
	// lookups counts the ids and response ids looked up in ClickHouse, by kind (id, response:
	// the sets cannot vouch for their hours; id_found, response_found: the sets found them),
	// and the ids the sets found that were recalled without a lookup (id_recalled).
	lookups *prometheus.CounterVec
	// repairs counts the correction rows written into the roll-ups, by table, and the time
	// units left unrepaired because they hold rows from before migration 0064 (table
	// "skipped_minutes", "skipped_days").
	repairs *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_rows_inserted_total",
			Help: "Rows inserted into usage_events.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_duplicates_total",
			Help: "Events dropped because their id is already in ClickHouse or earlier in the same batch.",
		}),
		responseDuplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_response_duplicates_total",
			Help: "Events dropped because another report of the same call (provider and response_id) under another event id counts: of higher source rank, or more detailed, or the first. A choice between reports that differ is recorded in usage_conflicts.",
		}),
		stuckKilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_stuck_inserts_killed_total",
			Help: "INSERTs of the aggregator's own partitions that ClickHouse still ran StuckInsertAfter after they were first waited for, killed so that the partitions go on (what they wrote is then checked and repaired).",
		}),
		displaced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_reports_displaced_total",
			Help: "Stored reports of a call taken out of spend_1m and spend_1d ('displaced' rows in cost_corrections) because a report of higher source rank, or of the same rank and more detail, came later.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_conflicts_total",
			Help: "Copies of an already stored event id with different content: dropped (the first copy is kept) and sent to USAGE_DEAD.",
		}),
		inserts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_inserts_total",
			Help: "INSERTs into usage_events by outcome (ok, error).",
		}, []string{"outcome"}),
		insertSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenmeter_aggregator_insert_seconds",
			Help:    "Duration of INSERTs into usage_events.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		poison: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_poison_messages_total",
			Help: "Undecodable messages, and rows with impossible values, sent to USAGE_DEAD.",
		}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenmeter_aggregator_breaker_state",
			Help: "State of the ClickHouse circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		dedupIDs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenmeter_aggregator_dedup_ids",
			Help: "Event ids held in the de-duplication set, by partition.",
		}, []string{"partition"}),
		dedupResponses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokenmeter_aggregator_dedup_responses",
			Help: "Provider responses (provider, response_id) held in the de-duplication set, by partition.",
		}, []string{"partition"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_lookups_total",
			Help: "Event ids (kind=id) and provider responses (kind=response) looked up in ClickHouse: those the de-duplication sets cannot vouch for (timed before the window, in an hour that events have left the sets from), and the rows of a failed INSERT before it is retried; and those the sets found (kind=id_found, response_found), confirmed in ClickHouse, which also tells a duplicate from a conflict; kind=id_recalled counts the ids the sets found among the partition's last 65,536 events written, whose content the writer remembers, so that no lookup was needed.",
		}, []string{"kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_aggregator_rollup_repairs_total",
			Help: "Correction rows the partition writers added to spend_1m, spend_1d, unit_spend_1m and unit_spend_1d, and rows to the response index usage_responses (label table), to make them agree with usage_events again after an INSERT of unknown outcome or a restart; skipped_minutes and skipped_days count the time units they could not compare because those hold roll-up rows from before migration 0064.",
		}, []string{"table"}),
	}
	m.inserts.WithLabelValues("ok")
	m.lookups.WithLabelValues("id")
	m.lookups.WithLabelValues("response")
	m.lookups.WithLabelValues("id_found")
	m.lookups.WithLabelValues("response_found")
	m.lookups.WithLabelValues("id_recalled")
	m.inserts.WithLabelValues("error")
	for _, t := range []string{"spend_1m", "spend_1d", "skipped_minutes", "skipped_days"} {
		m.repairs.WithLabelValues(t)
	}
	for _, c := range []prometheus.Collector{m.rows, m.duplicates, m.responseDuplicates, m.displaced, m.stuckKilled, m.conflicts, m.inserts, m.insertSecs, m.poison, m.breaker, m.dedupIDs, m.dedupResponses, m.lookups, m.repairs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register aggregator metrics: %w", err)
		}
	}
	return m, nil
}
