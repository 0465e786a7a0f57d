// Command collector runs tokenmeter's HTTP intake: it takes usage events on POST /v1/events
// and publishes them to NATS JetStream. Every flag may also be set through an environment
// variable (ops.ApplyEnv: TOKENMETER_NATS_URL, TOKENMETER_ADDR, TOKENMETER_PARTITIONS,
// TOKENMETER_KEYS_FILE, TOKENMETER_OPS_ADDR, TOKENMETER_<FLAG> ...); a flag on the command line
// wins. /healthz, /readyz and /metrics are served on -ops only.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/collector/collect"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

func main() { os.Exit(run()) }

func run() int {
	var cfg collect.Config
	natsURL := flag.String("nats", nats.DefaultURL, "NATS server URL")
	var natsCfg natsconn.Config
	natsCfg.Register(flag.CommandLine, "")
	flag.StringVar(&cfg.Addr, "addr", collect.DefaultAddr, "HTTP listen address")
	opsAddr := flag.String("ops", "127.0.0.1:9101", "address of /healthz, /readyz and /metrics (never served on -addr)")
	flag.IntVar(&cfg.Partitions, "partitions", 0, "USAGE_RAW partitions (0: the default, as every stage must agree)")
	flag.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", collect.DefaultMaxBodyBytes, "largest request body")
	flag.IntVar(&cfg.MaxEvents, "max-events", collect.DefaultMaxEvents, "most events in one request body")
	flag.IntVar(&cfg.MaxBodies, "max-bodies", collect.DefaultMaxBodies, "most request bodies read at once (more are answered 503 with Retry-After)")
	flag.DurationVar(&cfg.BodyTimeout, "body-timeout", collect.DefaultBodyTimeout, "longest a request body may take to arrive (slower is answered 408)")
	flag.DurationVar(&cfg.PublishTimeout, "publish-timeout", collect.DefaultPublishTimeout, "wait for JetStream acknowledgements")
	flag.StringVar(&cfg.KeysFile, "keys", "",
		"API-key registry (collector/keys JSON): requests must carry one of its keys, whose tags are applied to their events (default: no authentication, for trusted networks only)")
	flag.StringVar(&cfg.TagPolicyFile, "tag-policy", "", "required-tags policy file (YAML; see collect.TagPolicy)")
	flag.DurationVar(&cfg.FilePoll, "file-poll", collect.DefaultFilePoll, "how often the keys and tag-policy files are checked for changes")
	cfg.Streams = stream.DefaultOptions
	cfg.Streams.RegisterFlags(flag.CommandLine)
	flag.Parse()
	if err := ops.ApplyEnv(flag.CommandLine, ops.StageEnv); err != nil {
		fmt.Fprintf(os.Stderr, "collector: invalid environment:\n%v\n", err)
		return 2
	}

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer, cfg.Logger = reg, log
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "collector: invalid configuration:\n%v\n", err)
		return 2
	}

	nc, err := natsconn.Connect(*natsURL, "tokenmeter-collector", natsCfg,
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true))
	if err != nil {
		log.Error("connect to NATS", "url", *natsURL, "err", err)
		return 1
	}
	defer nc.Close()

	// Budget hard caps the alerter publishes to the KV bucket tokenmeter_budgets.
	enf := budget.NewEnforcer(nil, log)
	cfg.Budgets = enf
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	js, err := jetstream.New(nc)
	if err == nil {
		err = enf.Watch(ctx, js)
	}
	if err != nil {
		log.Error("watch budget hard caps", "err", err)
		return 1
	}

	c, err := collect.New(cfg, nc)
	if err != nil {
		log.Error("start collector", "err", err)
		return 1
	}
	defer ops.Serve(*opsAddr, c.OpsHandler(), func(err error) { log.Error("ops endpoints", "err", err); stop() })()
	if err := c.Run(ctx); err != nil {
		log.Error("collector stopped", "err", err)
		return 1
	}
	return 0
}
