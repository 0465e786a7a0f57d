// Package ops serves the endpoints every tokenmeter service answers (DESIGN.md §2.2):
// GET /healthz (the process is alive), GET /readyz (it can do its job now) and GET /metrics
// (Prometheus).
package ops

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports why a component is not ready, or nil when it is.
type Check func() error

// Register adds /healthz, /readyz and /metrics to mux. /readyz answers 503 with every failing
// check's message, one per line.
func Register(mux *http.ServeMux, g prometheus.Gatherer, checks ...Check) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var errs []error
		for _, c := range checks {
			if err := c(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}
