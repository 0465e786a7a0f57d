// Command alerter evaluates spend rules and budgets over USAGE_ENRICHED and notifies on-call.
// Every flag may also be set through an environment variable (ops.ApplyEnv:
// TOKENMETER_NATS_URL, TOKENMETER_RULES_FILE, TOKENMETER_<FLAG> ...); a flag on the command
// line wins.
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
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenmeter/tokenmeter/alerter/alerting"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	fs := flag.NewFlagSet("alerter", flag.ContinueOnError)
	var (
		natsURL = fs.String("nats", nats.DefaultURL, "NATS server URL")
		natsCfg natsconn.Config
		opsAddr = fs.String("ops", ":9104", "address of /healthz, /readyz, /metrics and the silences API (/api/v2/silences)")
		cfg     alerting.Config
	)
	fs.StringVar(&cfg.RulesFile, "rules", "", "rules file (YAML); empty runs the built-in rules without receivers")
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse", alerting.DefaultClickHouseDSN, "ClickHouse DSN")
	silenceTokenFile := fs.String("silence-token-file", "", "file holding the bearer token that creating or expiring a silence on the ops address needs (default: none needed)")
	chPasswordFile := fs.String("clickhouse-password-file", "", "file holding the password of the ClickHouse DSN's user, kept out of the DSN (a Kubernetes Secret, a compose volume)")
	fs.StringVar(&cfg.Database, "database", alerting.DefaultDatabase, "ClickHouse database")
	fs.DurationVar(&cfg.EvalInterval, "eval-interval", alerting.DefaultEvalInterval, "how often rules are evaluated")
	fs.DurationVar(&cfg.ReloadInterval, "reload-interval", alerting.DefaultReloadInterval, "how often the rules file is checked for changes")
	cfg.Streams = stream.DefaultOptions
	cfg.Streams.RegisterFlags(fs)
	natsCfg.Register(fs, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := ops.ApplyEnv(fs, ops.StageEnv); err != nil {
		log.Error("invalid environment", "err", err)
		return 2
	}
	var err error
	if cfg.ClickHouseDSN, err = ops.ClickHouseDSN(cfg.ClickHouseDSN, *chPasswordFile); err != nil {
		log.Error("invalid -clickhouse-password-file", "err", err)
		return 2
	}
	if cfg.SilenceToken, err = ops.SecretFile("silence token", *silenceTokenFile); err != nil {
		log.Error("invalid -silence-token-file", "err", err)
		return 2
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer, cfg.Logger = reg, log

	nc, err := natsconn.Connect(*natsURL, "tokenmeter-alerter", natsCfg, nats.MaxReconnects(-1))
	if err != nil {
		log.Error("connect to NATS", "url", *natsURL, "err", err)
		return 1
	}
	defer nc.Close()
	a, err := alerting.New(cfg, nc)
	if err != nil {
		log.Error("start alerter", "err", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mux := http.NewServeMux()
	ops.Register(mux, reg, a.Ready)
	mux.Handle("/api/v2/", a.SilenceHandler()) // silences (Alertmanager API v2)
	defer ops.Serve(*opsAddr, mux, func(err error) { log.Error("ops endpoints", "err", err); stop() })()

	log.Info("alerter starting", "nats", *natsURL, "ops", *opsAddr, "rules", cfg.RulesFile)
	if err := a.Run(ctx); err != nil {
		log.Error("alerter stopped", "err", fmt.Sprint(err))
		return 1
	}
	log.Info("alerter stopped")
	return 0
}
