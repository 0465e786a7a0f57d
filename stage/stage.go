// Package stage runs one of tokenmeter's stages as a process of its own, so that every stage
// command starts, reads its configuration, exposes its health and stops the same way: flags,
// each also read from its environment variable (ops.ApplyEnv); a JSON log on stderr; a
// Prometheus registry with the Go and process metrics; the NATS connection under the stage's
// identity (natsconn); /healthz, /readyz and /metrics on -ops; SIGINT and SIGTERM end it.
//
// A stage describes itself as a Command (its flags, how it validates and builds them) and its
// main is one line:
//
//	func main() { os.Exit(stage.Main(enrich.Command(), os.Args[1:])) }
package stage

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
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// Service is a stage built and ready to run.
type Service interface {
	// Ready reports why the stage cannot do its job now, or nil (/readyz).
	Ready() error
	// Run runs the stage until ctx ends or it fails.
	Run(ctx context.Context) error
}

// Process is what a stage is built with.
type Process struct {
	// Ctx ends at SIGINT or SIGTERM, or when the ops endpoints cannot be served.
	Ctx      context.Context
	Log      *slog.Logger
	Registry *prometheus.Registry
	NATS     *nats.Conn
	// NATSURL is the -nats the connection was made to, for messages.
	NATSURL string
	// Ops is the mux served on -ops, holding /healthz, /readyz and /metrics once the stage is
	// built; a stage may add its own routes to it (the alerter's silences API).
	Ops *http.ServeMux
}

// Command describes a stage's command line.
type Command struct {
	// Name names the stage: the NATS connection is "tokenmeter-<Name>" and messages start
	// with it.
	Name string
	// OpsAddr is the default of -ops.
	OpsAddr string
	// Flags registers the stage's own flags on fs.
	Flags func(fs *flag.FlagSet)
	// Validate checks the values the flags and the environment gave, naming each bad flag and
	// value. It runs before anything connects.
	Validate func() error
	// Start builds the stage. An error stops the command with status 2, as for a bad flag.
	Start func(p Process) (Service, error)
	// NATSOptions are added to the connection's options, which reconnect forever once
	// connected.
	NATSOptions []nats.Option
}

// FlagSet is the flag set of c: -nats, the natsconn flags, -ops and the stage's own. The
// deployment tests read it to check that a manifest sets only flags a command defines.
func (c Command) FlagSet() (*flag.FlagSet, *Common) {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	common := &Common{}
	fs.StringVar(&common.NATSURL, "nats", nats.DefaultURL, "NATS server URL (several, comma-separated, for a cluster)")
	common.NATS.Register(fs, "")
	fs.StringVar(&common.OpsAddr, "ops", c.OpsAddr, "address of /healthz, /readyz and /metrics")
	if c.Flags != nil {
		c.Flags(fs)
	}
	return fs, common
}

// Common holds the flags every stage command has.
type Common struct {
	NATSURL string
	NATS    natsconn.Config
	OpsAddr string
}

// Main runs the stage c with the command-line arguments args and returns the exit status:
// 0 after a clean stop, 1 when the stage failed while running, 2 when it could not start
// (a bad flag or environment variable, a configuration its Validate or Start refused).
func Main(c Command, args []string) int {
	fs, common := c.FlagSet()
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	// What stops the command before it runs is told plainly, one problem per line.
	fail := func(what string, err error) { fmt.Fprintf(os.Stderr, "%s: %s:\n%v\n", c.Name, what, err) }
	if err := ops.ApplyEnv(fs, ops.StageEnv); err != nil {
		fail("invalid environment", err)
		return 2
	}
	if c.Validate != nil {
		if err := c.Validate(); err != nil {
			fail("invalid configuration", err)
			return 2
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := append([]nats.Option{nats.MaxReconnects(-1)}, c.NATSOptions...)
	nc, err := natsconn.Connect(common.NATSURL, "tokenmeter-"+c.Name, common.NATS, opts...)
	if err != nil {
		fail("cannot connect", err)
		return 1
	}
	defer nc.Close()

	mux := http.NewServeMux()
	svc, err := c.Start(Process{Ctx: ctx, Log: log, Registry: reg, NATS: nc, NATSURL: common.NATSURL, Ops: mux})
	if err != nil {
		fail("cannot start", err)
		return 2
	}
	ops.Register(mux, reg, svc.Ready)
	defer ops.Serve(common.OpsAddr, mux, func(err error) { log.Error("ops endpoints", "err", err); stop() })()

	log.Info(c.Name+" running", "nats", common.NATSURL, "ops", common.OpsAddr)
	if err := svc.Run(ctx); err != nil {
		log.Error(c.Name+" stopped", "err", err)
		return 1
	}
	log.Info(c.Name + " stopped")
	return 0
}

// Sleep waits d, or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
