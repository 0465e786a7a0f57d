package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/collector/emit"
	"github.com/tokenmeter/tokenmeter/collector/proxy"
	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// proxyFlags is what `tokenmeter proxy` is configured with.
type proxyFlags struct {
	cfg      proxy.Config
	opsAddr  string
	natsURL  string
	nats     natsconn.Config
	keys     string
	emitOpts emit.Options
}

// routeFlags collects repeated -route flags.
type routeFlags []proxy.Route

func (r *routeFlags) String() string { return fmt.Sprint(len(*r), " routes") }

// Set parses PREFIX=API,UPSTREAM[,PROVIDER], e.g.
// /azure=openai,https://acme.openai.azure.com/openai/deployments/gpt-4o,azure.
func (r *routeFlags) Set(v string) error {
	prefix, rest, ok := strings.Cut(v, "=")
	parts := strings.Split(rest, ",")
	if !ok || len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("route %q is not PREFIX=API,UPSTREAM[,PROVIDER]", v)
	}
	rt := proxy.Route{Prefix: prefix, API: proxy.API(parts[0]), Upstream: parts[1]}
	if len(parts) == 3 {
		rt.Provider = parts[2]
	}
	*r = append(*r, rt)
	return nil
}

func parseProxyFlags(args []string) (proxyFlags, error) {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	var f proxyFlags
	fs.StringVar(&f.cfg.Addr, "addr", envOr("TOKENMETER_PROXY_ADDR", proxy.DefaultAddr), "proxy listen address")
	fs.StringVar(&f.opsAddr, "ops", envOr("TOKENMETER_PROXY_OPS_ADDR", "127.0.0.1:9105"), "address of /healthz, /readyz and /metrics (never served on -addr)")
	fs.DurationVar(&f.cfg.ResponseHeaderTimeout, "response-header-timeout", proxy.DefaultResponseHeaderTimeout,
		"longest wait for an upstream's response headers (the OpenAI and Anthropic SDKs' own default timeout); then 502")
	fs.IntVar(&f.cfg.MaxBodies, "max-bodies", proxy.DefaultMaxBodies, "most request bodies read at once (more are answered 503 with Retry-After)")
	fs.DurationVar(&f.cfg.BodyTimeout, "body-timeout", proxy.DefaultBodyTimeout, "longest a request body may take to arrive (slower is answered 408)")
	fs.StringVar(&f.natsURL, "nats", envOr("TOKENMETER_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL of the pipeline (the emitter buffers while it is down)")
	openai := fs.String("openai", envOr("TOKENMETER_OPENAI_UPSTREAM", "https://api.openai.com"), `upstream of the /openai route ("" = no route)`)
	anthropic := fs.String("anthropic", envOr("TOKENMETER_ANTHROPIC_UPSTREAM", "https://api.anthropic.com"), `upstream of the /anthropic route ("" = no route)`)
	var extra routeFlags
	fs.Var(&extra, "route", "another route, PREFIX=API,UPSTREAM[,PROVIDER] with API openai or anthropic (repeatable)")
	fs.StringVar(&f.keys, "keys", os.Getenv("TOKENMETER_PROXY_KEYS"), "JSON file binding API-key SHA-256 hashes to tags (optional)")
	fs.BoolVar(&f.cfg.InjectStreamUsage, "inject-stream-usage", os.Getenv("TOKENMETER_PROXY_INJECT_STREAM_USAGE") == "1",
		"add stream_options.include_usage to streamed OpenAI chat requests that do not set it, so they can be metered")
	fs.IntVar(&f.emitOpts.Partitions, "partitions", stream.DefaultPartitions, "USAGE_RAW partitions (must match the pipeline)")
	fs.IntVar(&f.emitOpts.MaxBuffered, "max-buffered", emit.DefaultMaxBuffered, "events held while the pipeline is unreachable")
	natsEnv := natsFlags(fs, &f.nats, natsauth.Proxy)
	if err := fs.Parse(args); err != nil {
		return proxyFlags{}, err
	}
	if err := natsEnv(); err != nil {
		return proxyFlags{}, fmt.Errorf("invalid environment: %w", err)
	}
	if fs.NArg() > 0 {
		return proxyFlags{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *openai != "" {
		f.cfg.Routes = append(f.cfg.Routes, proxy.Route{Prefix: "/openai", Upstream: *openai, API: proxy.APIOpenAI})
	}
	if *anthropic != "" {
		f.cfg.Routes = append(f.cfg.Routes, proxy.Route{Prefix: "/anthropic", Upstream: *anthropic, API: proxy.APIAnthropic})
	}
	f.cfg.Routes = append(f.cfg.Routes, extra...)
	if len(f.cfg.Routes) == 0 {
		return proxyFlags{}, errors.New("no routes: set -openai, -anthropic or -route")
	}
	return f, nil
}

// runProxy runs `tokenmeter proxy`: the OpenAI/Anthropic-compatible proxy, emitting usage
// events to the pipeline's NATS through the Go emitter.
func runProxy(ctx context.Context, args []string) (err error) {
	f, err := parseProxyFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f.cfg.Registerer, f.cfg.Logger = reg, log.With("stage", "proxy")
	f.emitOpts.Registerer, f.emitOpts.Logger = reg, log.With("stage", "emitter")
	f.emitOpts.Source = batch.SourceProxy // its reports outrank any other of the same call
	if f.keys != "" {
		if f.cfg.Bindings, err = proxy.LoadBindings(f.keys); err != nil {
			return err
		}
	}
	// The proxy must serve even when the pipeline is down: connect in the background.
	nc, err := natsconn.Connect(f.natsURL, "tokenmeter-proxy", f.nats, nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	em, err := emit.New(nc, f.emitOpts)
	if err != nil {
		return err
	}
	defer func() {
		// Flush what the emitter holds; events still unsent after this are lost with the
		// process, and the error says how many.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if cerr := em.Close(cctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	f.cfg.Emitter = em
	// Budget hard caps: calls of a capped scope are refused before they are forwarded. The
	// caps load once NATS answers; until then every call is forwarded.
	f.cfg.Budgets = budget.NewEnforcer(nil, log.With("stage", "proxy"))
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	go f.cfg.Budgets.Follow(ctx, js)
	p, err := proxy.New(f.cfg)
	if err != nil {
		return err
	}
	for _, r := range f.cfg.Routes {
		fmt.Printf("proxy route  http://%s%s  ->  %s (%s)\n", f.cfg.Addr, r.Prefix, r.Upstream, r.API)
	}
	fmt.Printf("emitting usage events to NATS at %s; %d API keys bound. Stop with Ctrl-C.\n", f.natsURL, f.cfg.Bindings.Len())
	defer ops.Serve(f.opsAddr, p.OpsHandler(), func(err error) { log.Error("ops endpoints", "err", err) })()
	return p.Run(ctx)
}
