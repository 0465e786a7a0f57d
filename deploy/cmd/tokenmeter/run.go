package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/deploy/standalone"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

func runPipeline(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg := standalone.Config{}
	fs.StringVar(&cfg.DataDir, "data", envOr("TOKENMETER_DATA_DIR", ".data"), "data directory (embedded NATS file store)")
	fs.StringVar(&cfg.HTTPAddr, "addr", envOr("TOKENMETER_ADDR", "127.0.0.1:8080"), "collector HTTP address")
	fs.StringVar(&cfg.OpsAddr, "ops", envOr("TOKENMETER_OPS_ADDR", "127.0.0.1:9090"), "address of /healthz, /readyz, /metrics and the silences API (/api/v2/silences)")
	fs.StringVar(&cfg.NATSAddr, "nats", envOr("TOKENMETER_NATS_ADDR", "127.0.0.1:4222"), `address where the embedded NATS accepts emitters ("" = in-process only)`)
	fs.StringVar(&cfg.NATSCredsDir, "nats-creds", os.Getenv("TOKENMETER_NATS_CREDS"), "directory of the NATS identities' nkey seeds, created on first start (default DATA/nats/creds)")
	fs.StringVar(&cfg.NATSTLS.CertFile, "nats-tls-cert", os.Getenv("TOKENMETER_NATS_TLS_CERT"), "certificate (PEM) of the NATS listener; setting it makes the listener TLS-only")
	fs.StringVar(&cfg.NATSTLS.KeyFile, "nats-tls-key", os.Getenv("TOKENMETER_NATS_TLS_KEY"), "key (PEM) of -nats-tls-cert")
	fs.StringVar(&cfg.NATSTLS.CAFile, "nats-tls-ca", os.Getenv("TOKENMETER_NATS_TLS_CA"), "CA (PEM) whose client certificates the NATS listener requires (default: none required)")
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	fs.StringVar(&cfg.Database, "database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	fs.IntVar(&cfg.Partitions, "partitions", stream.DefaultPartitions, "stream partitions")
	fs.StringVar(&cfg.PricingDir, "pricing", os.Getenv("TOKENMETER_PRICING_DIR"), "directory of pricing files (default: the shipped catalogue)")
	fs.StringVar(&cfg.AttributionFile, "attribution", os.Getenv("TOKENMETER_ATTRIBUTION_FILE"), "attribution rules file (enricher/attribute)")
	fs.StringVar(&cfg.EmitterBindingsFile, "emitter-bindings", os.Getenv("TOKENMETER_EMITTER_BINDINGS_FILE"), "emitter bindings file (JSON): the tags and teams each NATS emitter identity's events are charged to")
	fs.StringVar(&cfg.KeysFile, "keys", os.Getenv("TOKENMETER_KEYS_FILE"), "collector API-key registry (JSON); without it the collector trusts its network")
	fs.StringVar(&cfg.TagPolicyFile, "tag-policy", os.Getenv("TOKENMETER_TAG_POLICY_FILE"), "collector required-tags policy (YAML)")
	fs.StringVar(&cfg.RulesFile, "rules", os.Getenv("TOKENMETER_RULES_FILE"), "alerter rules file (default: the built-in rules, no receivers)")
	silenceTokenFile := fs.String("silence-token-file", os.Getenv("TOKENMETER_SILENCE_TOKEN_FILE"), "file holding the bearer token that creating or expiring a silence on the ops address needs (default: none needed)")
	dashboardAddr := fs.String("dashboard", envOr("TOKENMETER_DASHBOARD_ADDR", "127.0.0.1:8090"), `address of the dashboard page and its JSON API ("" = none)`)
	var access dashboardAccess
	fs.StringVar(&access.hosts, "dashboard-host", os.Getenv("TOKENMETER_DASHBOARD_HOSTS"), "host names the dashboard answers besides localhost and IP addresses, comma-separated")
	fs.StringVar(&access.tokenFile, "dashboard-token-file", os.Getenv("TOKENMETER_DASHBOARD_TOKEN_FILE"), "file holding the token every dashboard request must carry")
	billsEvery := fs.Duration("bills-sync-every", 0, "import the providers' usage and cost reports this often, as `tokenmeter bills sync` does (the last 7 days; 0: never; TOKENMETER_BILLS_SYNC_EVERY); admin keys from -openai-admin-key-file / -anthropic-admin-key-file or TOKENMETER_OPENAI_ADMIN_KEY / TOKENMETER_ANTHROPIC_ADMIN_KEY")
	openaiKeyFile := fs.String("openai-admin-key-file", os.Getenv("TOKENMETER_OPENAI_ADMIN_KEY_FILE"), "file holding the OpenAI admin key, for -bills-sync-every")
	anthropicKeyFile := fs.String("anthropic-admin-key-file", os.Getenv("TOKENMETER_ANTHROPIC_ADMIN_KEY_FILE"), "file holding the Anthropic admin key, for -bills-sync-every")
	demo := fs.Bool("demo", false, "drive synthetic traffic into the pipeline and print a spend summary every few seconds")
	demoRate := fs.Int("demo-rate", 2000, "events per second sent by -demo")
	memFlags := flag.NewFlagSet("memory", flag.ContinueOnError)
	memLimit := memFlags.Int64("memory-limit", standalone.DefaultMemoryLimit,
		"soft limit of the process's Go memory in bytes, like GOMEMLIMIT, which wins when set (0: none)")
	memFlags.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	cfg.Streams = stream.DefaultOptions
	streamFlags := flag.NewFlagSet("streams", flag.ContinueOnError)
	cfg.Streams.RegisterFlags(streamFlags)
	streamFlags.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := errors.Join(envForUnset(fs, streamFlags), envForUnset(fs, memFlags)); err != nil {
		return fmt.Errorf("invalid environment: %w", err)
	}
	var err error
	if cfg.SilenceToken, err = ops.SecretFile("silence token", *silenceTokenFile); err != nil {
		return err
	}
	if v := os.Getenv("TOKENMETER_BILLS_SYNC_EVERY"); v != "" && !flagSet(fs, "bills-sync-every") {
		if *billsEvery, err = time.ParseDuration(v); err != nil || *billsEvery < 0 {
			return fmt.Errorf("TOKENMETER_BILLS_SYNC_EVERY=%q: not a duration of 0 or more (e.g. 6h)", v)
		}
	}
	if *billsEvery < 0 {
		return fmt.Errorf("-bills-sync-every %s: must not be negative", *billsEvery)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if limit := standalone.ApplyMemoryLimit(*memLimit); limit != math.MaxInt64 {
		cfg.Logger.Info("Go memory limit", "bytes", limit)
	}

	p, err := standalone.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if *billsEvery > 0 {
		args := []string{"sync", "-clickhouse", cfg.ClickHouseDSN, "-database", cfg.Database, "-days", "7"}
		if *openaiKeyFile != "" {
			args = append(args, "-openai-admin-key-file", *openaiKeyFile)
		}
		if *anthropicKeyFile != "" {
			args = append(args, "-anthropic-admin-key-file", *anthropicKeyFile)
		}
		log := cfg.Logger.With("stage", "bills")
		go syncBillsEvery(ctx, *billsEvery, func(ctx context.Context) (string, error) {
			var out bytes.Buffer
			err := billsTo(ctx, &out, &out, time.Now, args)
			return strings.TrimSpace(out.String()), err
		}, log)
	}
	// The catalogue's price rows and check dates, for the view price_staleness.
	go publishPricesAtStart(ctx, cfg.Logger.With("stage", "pricing"), cfg.ClickHouseDSN, cfg.Database, cfg.PricingDir, 5*time.Second, 60)
	dashboardURL := "(off)"
	if *dashboardAddr != "" {
		at, done, err := startDashboard(ctx, *dashboardAddr, cfg.ClickHouseDSN, cfg.Database, p.NATSAs(natsauth.Dashboard), access, cfg.Logger.With("stage", "dashboard"))
		if err != nil {
			return err
		}
		go func() {
			if err := <-done; err != nil {
				cfg.Logger.Error("dashboard stopped", "err", err)
			}
		}()
		dashboardURL = "http://" + at.String() + "/"
	}
	fmt.Printf(`tokenmeter is running.
  send events:   curl -X POST http://%[1]s/v1/events -H 'Content-Type: application/x-ndjson' --data-binary @events.ndjson
  emitters:      NATS at %[2]s, with an identity of its own (Go: collector/emit):
                 go run ./deploy/cmd/tokenmeter nats add-emitter -dir %[6]s NAME
  NATS access:   nkey seeds of every role in %[6]s (mode 0600); no anonymous client
  health:        http://%[3]s/healthz  /readyz  /metrics
  query:         clickhouse-client --query "SELECT team, sum(cost_usd) FROM %[4]s.spend_1m GROUP BY team"
                 curl 'http://127.0.0.1:8123/' --data-binary "SELECT model, sum(events), sum(cost_usd) FROM %[4]s.spend_1d GROUP BY model"
  summary:       go run ./deploy/cmd/tokenmeter summary
  silence:       go run ./deploy/cmd/tokenmeter silence add -alerter http://%[3]s -match team=search -for 2h -comment "load test"
  dashboard:     %[5]s
Stop with Ctrl-C.
`, p.CollectorAddr(), orNone(p.NATSURL()), p.OpsAddr(), cfg.Database, dashboardURL, p.NATSCredsDir())
	if *demo {
		go runDemo(ctx, "http://"+p.CollectorAddr()+"/v1/events", *demoRate, cfg.ClickHouseDSN, cfg.Database, 5*time.Second)
	}
	return p.Wait()
}

// envForUnset sets each flag of only that the command line left unset from its environment
// variable (ops.EnvName: -stream-max-bytes from TOKENMETER_STREAM_MAX_BYTES).
func envForUnset(fs, only *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	only.VisitAll(func(f *flag.Flag) {
		key := ops.EnvName(f.Name)
		if v := os.Getenv(key); v != "" && !given[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q (flag -%s): %v", key, v, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func orNone(s string) string {
	if s == "" {
		return "(in-process only)"
	}
	return s
}

// syncBillsEvery runs sync at once and then every interval until ctx ends, logging what each
// run imported, or its error (the next run tries again: a sync is idempotent).
func syncBillsEvery(ctx context.Context, every time.Duration, sync func(context.Context) (string, error), log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if report, err := sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("bills sync failed; trying again at the next run", "report", report, "err", err, "next_in", every)
		} else {
			log.Info("bills synced", "report", report)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// flagSet reports whether the command line set flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
