// Command enricher runs the enricher stage alone, against an external NATS JetStream. Every
// flag may also be set through an environment variable (ops.ApplyEnv: TOKENMETER_NATS_URL,
// TOKENMETER_PRICING_DIR, TOKENMETER_<FLAG> ...); a flag on the command line wins.
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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/enricher/enrich"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

func main() { os.Exit(run()) }

func run() int {
	natsURL := flag.String("nats", nats.DefaultURL, "NATS server URL")
	var natsCfg natsconn.Config
	natsCfg.Register(flag.CommandLine, "")
	opsAddr := flag.String("ops", "127.0.0.1:9092", "address of /healthz, /readyz and /metrics")
	var cfg enrich.Config
	flag.StringVar(&cfg.PricingDir, "pricing", "", "directory of pricing files (default: the shipped catalogue)")
	flag.IntVar(&cfg.Workers, "workers", 2, "concurrent fetch-price-publish loops")
	flag.StringVar(&cfg.AttributionFile, "attribution", "", "attribution rules file (default: none; events keep their tags)")
	flag.StringVar(&cfg.EmitterBindingsFile, "emitter-bindings", "",
		"emitter bindings file (JSON): the tags and teams each NATS emitter identity's events are charged to (default: none; emitters' events keep their tags)")
	flag.DurationVar(&cfg.PricingPoll, "pricing-poll", 5*time.Second, "how often the pricing directory, attribution file and emitter bindings file are checked for changes")
	flag.DurationVar(&cfg.AckWait, "ack-wait", 0, "how long JetStream waits for an ack before redelivering a raw message (0: the default)")
	flag.Int64Var(&cfg.MaxAhead, "max-ahead", 0, "bytes USAGE_ENRICHED may hold, while the aggregators take from it, before the enricher waits for them (0: 64 MiB; negative: never wait)")
	cfg.Streams = stream.DefaultOptions
	cfg.Streams.RegisterFlags(flag.CommandLine)
	flag.Parse()
	if err := ops.ApplyEnv(flag.CommandLine, ops.StageEnv); err != nil {
		fmt.Fprintf(os.Stderr, "enricher: invalid environment:\n%v\n", err)
		return 2
	}

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Logger = reg, log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nc, err := natsconn.Connect(*natsURL, "tokenmeter-enricher", natsCfg, nats.MaxReconnects(-1))
	if err != nil {
		fmt.Fprintf(os.Stderr, "enricher: %v\n", err)
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
	defer ops.Serve(*opsAddr, mux, func(err error) { log.Error("ops endpoints", "err", err); stop() })()
	if err := e.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "enricher: %v\n", err)
		return 1
	}
	return 0
}
