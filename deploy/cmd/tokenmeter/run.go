package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/deploy/standalone"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// runEnv names the environment variables of run's flags where they differ from the stage
// commands' (ops.StageEnv, else ops.EnvName): the names run documented first.
var runEnv = func() map[string]string {
	m := maps.Clone(ops.StageEnv)
	m["data"] = "TOKENMETER_DATA_DIR"
	m["nats"] = "TOKENMETER_NATS_ADDR" // the embedded server's listener, not a server to connect to
	m["database"] = "TOKENMETER_DATABASE"
	m["dashboard"] = "TOKENMETER_DASHBOARD_ADDR"
	m["dashboard-host"] = "TOKENMETER_DASHBOARD_HOSTS"
	return m
}()

// runOptions are run's flags.
type runOptions struct {
	cfg                             standalone.Config
	silenceTokenFile, dashboardAddr string
	access                          dashboardAccess
	billsEvery                      time.Duration
	openaiKeyFile, anthropicKeyFile string
	demo                            bool
	demoRate                        int
	memLimit                        int64
}

// parseRun reads run's flags from args and, for those args leaves unset, the environment.
func parseRun(args []string) (runOptions, error) {
	var o runOptions
	cfg := &o.cfg
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&cfg.DataDir, "data", ".data", "data directory (embedded NATS file store)")
	fs.StringVar(&cfg.HTTPAddr, "addr", "127.0.0.1:8080", "collector HTTP address")
	fs.StringVar(&cfg.OpsAddr, "ops", "127.0.0.1:9090", "address of /healthz, /readyz, /metrics and the silences API (/api/v2/silences)")
	fs.StringVar(&cfg.NATSAddr, "nats", "127.0.0.1:4222", `address where the embedded NATS accepts emitters ("" = in-process only)`)
	fs.StringVar(&cfg.NATSCredsDir, "nats-creds", "", "directory of the NATS identities' nkey seeds, created on first start (default DATA/nats/creds)")
	fs.StringVar(&cfg.NATSTLS.CertFile, "nats-tls-cert", "", "certificate (PEM) of the NATS listener; setting it makes the listener TLS-only")
	fs.StringVar(&cfg.NATSTLS.KeyFile, "nats-tls-key", "", "key (PEM) of -nats-tls-cert")
	fs.StringVar(&cfg.NATSTLS.CAFile, "nats-tls-ca", "", "CA (PEM) whose client certificates the NATS listener requires (default: none required)")
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse", "clickhouse://127.0.0.1:9000", "ClickHouse DSN")
	fs.StringVar(&cfg.Database, "database", "tokenmeter", "ClickHouse database")
	fs.IntVar(&cfg.Partitions, "partitions", stream.DefaultPartitions, "stream partitions")
	fs.StringVar(&cfg.PricingDir, "pricing", "", "directory of pricing files (default: the shipped catalogue)")
	fs.StringVar(&cfg.AttributionFile, "attribution", "", "attribution rules file (enricher/attribute)")
	fs.StringVar(&cfg.EmitterBindingsFile, "emitter-bindings", "", "emitter bindings file (JSON): the tags and teams each NATS emitter identity's events are charged to")
	fs.StringVar(&cfg.KeysFile, "keys", "", "collector API-key registry (JSON); without it the collector trusts its network")
	fs.StringVar(&cfg.TagPolicyFile, "tag-policy", "", "collector required-tags policy (YAML)")
	fs.StringVar(&cfg.RulesFile, "rules", "", "alerter rules file (default: the built-in rules, no receivers)")
	fs.StringVar(&o.silenceTokenFile, "silence-token-file", "", "file holding the bearer token that creating or expiring a silence on the ops address needs (default: none needed)")
	fs.StringVar(&o.dashboardAddr, "dashboard", "127.0.0.1:8090", `address of the dashboard page and its JSON API ("" = none)`)
	fs.StringVar(&o.access.hosts, "dashboard-host", "", "host names the dashboard answers besides localhost and IP addresses, comma-separated")
	fs.StringVar(&o.access.tokenFile, "dashboard-token-file", "", "file holding the token every dashboard request must carry")
	fs.DurationVar(&o.billsEvery, "bills-sync-every", 0, "import the providers' usage and cost reports this often, as `tokenmeter bills sync` does (the last 7 days; 0: never; TOKENMETER_BILLS_SYNC_EVERY); admin keys from -openai-admin-key-file / -anthropic-admin-key-file or TOKENMETER_OPENAI_ADMIN_KEY / TOKENMETER_ANTHROPIC_ADMIN_KEY")
	fs.StringVar(&o.openaiKeyFile, "openai-admin-key-file", "", "file holding the OpenAI admin key, for -bills-sync-every")
	fs.StringVar(&o.anthropicKeyFile, "anthropic-admin-key-file", "", "file holding the Anthropic admin key, for -bills-sync-every")
	fs.BoolVar(&o.demo, "demo", false, "drive synthetic traffic into the pipeline and print a spend summary every few seconds")
	fs.IntVar(&o.demoRate, "demo-rate", 2000, "events per second sent by -demo")
	fs.Int64Var(&o.memLimit, "memory-limit", standalone.DefaultMemoryLimit,
		"soft limit of the process's Go memory in bytes, like GOMEMLIMIT, which wins when set (0: none)")
	cfg.Streams = stream.DefaultOptions
	cfg.Streams.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := ops.ApplyEnv(fs, runEnv); err != nil {
		return o, fmt.Errorf("invalid environment: %w", err)
	}
	var err error
	if cfg.SilenceToken, err = ops.SecretFile("silence token", o.silenceTokenFile); err != nil {
		return o, err
	}
	if o.billsEvery < 0 {
		return o, fmt.Errorf("-bills-sync-every %s: must not be negative", o.billsEvery)
	}
	return o, nil
}

func runPipeline(ctx context.Context, args []string) error {
	o, err := parseRun(args)
	if err != nil {
		return err
	}
	cfg := o.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if limit := standalone.ApplyMemoryLimit(o.memLimit); limit != math.MaxInt64 {
		cfg.Logger.Info("Go memory limit", "bytes", limit)
	}

	p, err := standalone.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if o.billsEvery > 0 {
		args := []string{"sync", "-clickhouse", cfg.ClickHouseDSN, "-database", cfg.Database, "-days", "7"}
		if o.openaiKeyFile != "" {
			args = append(args, "-openai-admin-key-file", o.openaiKeyFile)
		}
		if o.anthropicKeyFile != "" {
			args = append(args, "-anthropic-admin-key-file", o.anthropicKeyFile)
		}
		log := cfg.Logger.With("stage", "bills")
		go syncBillsEvery(ctx, o.billsEvery, func(ctx context.Context) (string, error) {
			var out bytes.Buffer
			err := billsTo(ctx, &out, &out, time.Now, args)
			return strings.TrimSpace(out.String()), err
		}, log)
	}
	// The catalogue's price rows and check dates, for the view price_staleness.
	go publishPricesAtStart(ctx, cfg.Logger.With("stage", "pricing"), cfg.ClickHouseDSN, cfg.Database, cfg.PricingDir, 5*time.Second, 60)
	dashboardURL := "(off)"
	if o.dashboardAddr != "" {
		at, done, err := startDashboard(ctx, o.dashboardAddr, cfg.ClickHouseDSN, cfg.Database, p.NATSAs(natsauth.Dashboard), o.access, cfg.Logger.With("stage", "dashboard"))
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
	if o.demo {
		go runDemo(ctx, "http://"+p.CollectorAddr()+"/v1/events", o.demoRate, cfg.ClickHouseDSN, cfg.Database, 5*time.Second)
	}
	return p.Wait()
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
