package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests       *prometheus.CounterVec
	outcomes       *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
	droppedTags    prometheus.Counter
	injected       prometheus.Counter
	escaped        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_proxy_requests_total",
			Help: "Requests proxied, by route prefix and whether the response is metered.",
		}, []string{"route", "metered"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_proxy_usage_total",
			Help: "Metered responses by outcome: emitted, no_usage (e.g. an OpenAI stream without include_usage), unreadable, too_large, incomplete (cut short before any usage), upstream_error, invalid, dropped (emitter full), budget_refused (refused under a budget hard cap, not forwarded).",
		}, []string{"outcome"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_proxy_upstream_errors_total",
			Help: "Requests that got no response from the upstream, by reason: unreachable, timeout (no response headers within the timeout), body_timeout (the client's body was late), client_gone, busy (refused unread: too many bodies being read).",
		}, []string{"reason"}),
		droppedTags: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_proxy_dropped_tags_total",
			Help: "Attribution headers ignored: invalid, over the tag limit, or overridden by the API key's binding.",
		}),
		injected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenmeter_proxy_stream_usage_injected_total",
			Help: "Streamed Chat Completions requests given stream_options.include_usage (InjectStreamUsage).",
		}),
		escaped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_proxy_escaped_calls_total",
			Help: "Forwarded calls that were or may have been billed but yielded no usage, emitted as estimated events, by reason: cut_stream, client_gone, upstream_timeout, no_usage, upstream_error.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.outcomes, m.upstreamErrors, m.droppedTags, m.injected, m.escaped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return m, nil
}
