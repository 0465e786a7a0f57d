// Package collect is the HTTP intake of tokenmeter (DESIGN.md §2.2): it decodes and validates
// usage events, batches them per partition and publishes them to JetStream's USAGE_RAW, and
// answers only once JetStream has stored them.
package collect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/collector/internal/guard"
	"github.com/tokenmeter/tokenmeter/collector/otlp"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// The circuit breaker around publishing opens after breakerFailures consecutive failed
// requests and stays open for breakerOpen; a 503 tells clients to come back after that long.
const (
	breakerFailures = 5
	breakerOpen     = 5 * time.Second
)

// Retry-After values, in seconds. A full stream drains as the enricher consumes, so a short
// wait is enough; an unreachable NATS needs at least as long as the breaker stays open.
const (
	retryAfterFull        = "1"
	retryAfterUnavailable = "5"
)

// shutdownGrace is how long Run lets in-flight requests finish beyond their publish timeout.
const shutdownGrace = 5 * time.Second

// Collector is the HTTP intake stage.
type Collector struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	breaker *gobreaker.CircuitBreaker
	metrics *metrics
	attr    *attributor // API keys and tag policy (auth.go)
	mux     *http.ServeMux
	handler http.Handler // mux behind the bound on bodies
	addr    atomic.Pointer[string]
	// bodies recycles request-body buffers (*bytes.Buffer): a 1,000-event body is ~400 KiB,
	// and growing a fresh buffer to that size as it arrives, for every request, was the
	// collector's largest source of garbage.
	bodies sync.Pool
	// decoders recycles the decoders of bodies, which keep their events' array and maps
	// (*event.Decoder), grouping the rows messages groups by partition (*grouping), and
	// payloads the buffers their messages are encoded into (*[]byte).
	decoders, grouping, payloads sync.Pool
	// now is the receive clock; tests replace it to make payloads reproducible.
	now func() time.Time
}

// New builds a collector that publishes on nc. It does not touch the network: Run ensures
// the streams and listens.
func New(cfg Config, nc *nats.Conn) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid collector config: %w", err)
	}
	if nc == nil {
		return nil, errors.New("new collector: the NATS connection is nil")
	}
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("new JetStream context: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if err := cfg.Budgets.Register(cfg.Registerer); err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg, nc: nc, js: js, metrics: m, now: time.Now}
	c.breaker = gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:    "nats-publish",
		Timeout: breakerOpen,
		ReadyToTrip: func(counts gobreaker.Counts) bool {
			return counts.ConsecutiveFailures >= breakerFailures
		},
		// A full stream is JetStream answering, not failing: it must not open the breaker.
		IsSuccessful: func(err error) bool { return err == nil || errors.Is(err, errFull) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			cfg.Logger.Warn("NATS publish circuit breaker changed state", "from", from.String(), "to", to.String())
			m.breakerOpen.Set(boolGauge(to == gobreaker.StateOpen))
		},
	})
	if c.attr, err = newAttributor(cfg); err != nil {
		return nil, err
	}
	c.mux = http.NewServeMux()
	c.mux.Handle("POST /v1/events", c.attr.authenticate(http.HandlerFunc(c.ingest)))
	traces, err := otlp.NewHandler(c, otlp.Config{MaxBodyBytes: cfg.MaxBodyBytes, MaxEvents: cfg.MaxEvents, Registerer: cfg.Registerer, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	c.mux.Handle("POST "+otlp.Path, c.attr.authenticate(traces))
	if err := c.mountOutcomes(); err != nil {
		return nil, err
	}
	c.handler = guard.Bodies(c.mux, cfg.MaxBodies, cfg.BodyTimeout, func(w http.ResponseWriter, _ *http.Request) {
		c.fail(w, http.StatusServiceUnavailable, retryAfterFull,
			fmt.Sprintf("the collector is reading %d request bodies, its limit: send this one again later", cfg.MaxBodies))
	})
	return c, nil
}

// Handler serves POST /v1/events, POST /v1/traces and POST /v1/outcomes. The ops endpoints
// are not among them: they say how the collector is doing to anyone who asks, so they are
// served apart (OpsHandler), on an address of their own.
func (c *Collector) Handler() http.Handler { return c.handler }

// OpsHandler serves /healthz, /readyz (Ready) and /metrics.
func (c *Collector) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	ops.Register(mux, c.cfg.Gatherer, c.Ready)
	return mux
}

// Addr is the address Run listens on, or "" before it listens.
func (c *Collector) Addr() string {
	if a := c.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Run listens on Config.Addr and serves until ctx ends (see Serve).
func (c *Collector) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", c.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.cfg.Addr, err)
	}
	return c.Serve(ctx, ln)
}

// Serve ensures the streams exist, serves HTTP on ln and shuts down gracefully — letting
// accepted requests finish their publishing — when ctx ends. Serve closes ln.
func (c *Collector) Serve(ctx context.Context, ln net.Listener) error {
	if err := stream.Ensure(ctx, c.js, c.cfg.Streams); err != nil {
		ln.Close()
		return fmt.Errorf("ensure streams: %w", err)
	}
	addr := ln.Addr().String()
	c.addr.Store(&addr)
	srv := &http.Server{
		Handler:           c.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	c.cfg.Logger.Info("collector listening", "addr", addr, "partitions", c.cfg.Partitions)
	go c.attr.watchFiles(ctx, c.cfg.FilePoll)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve HTTP on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.PublishTimeout+shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down HTTP server on %s: %w", addr, err)
	}
	c.cfg.Logger.Info("collector stopped", "addr", addr)
	return nil
}

// Ready is the readiness check: the collector can take events when NATS is connected and the
// breaker lets publishes through.
func (c *Collector) Ready() error {
	var errs []error
	if !c.nc.IsConnected() {
		errs = append(errs, fmt.Errorf("NATS is not connected (status %s)", c.nc.Status()))
	}
	if c.breaker.State() == gobreaker.StateOpen {
		errs = append(errs, errors.New("the NATS publish circuit breaker is open"))
	}
	return errors.Join(errs...)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
