// Package ops serves the endpoints every tokenmeter service answers (DESIGN.md §2.2):
// GET /healthz (the process is alive), GET /readyz (it can do its job now) and GET /metrics
// (Prometheus).
package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

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

// Serve serves h on addr until the returned stop is called, which shuts the server down
// (waiting up to 5 s for requests in flight). A server that cannot listen, or fails later,
// reports the error to failed, which a service uses to stop: a stage whose probes cannot be
// reached would look dead to its orchestrator anyway.
func Serve(addr string, h http.Handler, failed func(error)) (stop func()) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			failed(fmt.Errorf("serve ops endpoints on %s: %w", addr, err))
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
