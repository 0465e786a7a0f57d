// Command enricher runs the enricher stage alone, against an external NATS JetStream.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/enricher/enrich"
	"github.com/tokenmeter/tokenmeter/schemas/ops"
)

func main() { os.Exit(run()) }

func run() int {
	natsURL := flag.String("nats", envOr("TOKENMETER_NATS_URL", nats.DefaultURL), "NATS server URL")
	opsAddr := flag.String("ops", "127.0.0.1:9092", "address of /healthz, /readyz and /metrics")
	var cfg enrich.Config
	flag.StringVar(&cfg.PricingDir, "pricing", os.Getenv("TOKENMETER_PRICING_DIR"), "directory of pricing files (default: the shipped catalogue)")
	flag.IntVar(&cfg.Workers, "workers", 2, "concurrent fetch-price-publish loops")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Logger = reg, log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nc, err := nats.Connect(*natsURL, nats.Name("tokenmeter-enricher"), nats.MaxReconnects(-1))
	if err != nil {
		fmt.Fprintf(os.Stderr, "enricher: connect to NATS at %s: %v\n", *natsURL, err)
		return 1
	}
	defer nc.Close()
	e, err := enrich.New(cfg, nc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "enricher: %v\n", err)
		return 2
	}
	mux := http.NewServeMux()
	ops.Register(mux, reg, e.Ready)
	go func() {
		if err := http.ListenAndServe(*opsAddr, mux); err != nil {
			log.Error("ops endpoints", "addr", *opsAddr, "err", err)
		}
	}()
	if err := e.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "enricher: %v\n", err)
		return 1
	}
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
