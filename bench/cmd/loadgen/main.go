// Command loadgen posts generated usage events to a collector and reports what it answered:
//
//	loadgen -url http://127.0.0.1:8080/v1/events -events 1000000 -batch 1000 -clients 4
//
// It honours 429 and 503 answers by waiting Retry-After and re-sending the same body, so a
// run that ends without HTTP errors has delivered every event exactly as generated. The
// report compares the collector's accepted and rejected counts with what the generator
// expects.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	rep, err := send(ctx, cfg, time.Now(), log)
	if perr := rep.print(stdout); perr != nil {
		fmt.Fprintf(stderr, "loadgen: print the report: %v\n", perr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	if rep.httpErrors > 0 {
		return 1
	}
	return 0
}

// config is what the flags set.
type config struct {
	url      string
	events   int
	batch    int
	clients  int
	rate     float64
	format   string
	duration time.Duration
	timeout  time.Duration
	gen      loadgen.Config
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := loadgen.DefaultConfig(time.Time{})
	var c config
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080/v1/events", "collector endpoint to POST events to")
	fs.IntVar(&c.events, "events", 100_000, "events to send (0 = until -duration ends)")
	fs.IntVar(&c.batch, "batch", 1000, "events per request")
	fs.IntVar(&c.clients, "clients", 4, "concurrent requests")
	fs.Float64Var(&c.rate, "rate", 0, "events per second (0 = as fast as possible)")
	fs.StringVar(&c.format, "format", "ndjson", "body format: ndjson or array")
	fs.DurationVar(&c.duration, "duration", 0, "stop sending after this long (0 = until -events are sent)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "timeout of one request")
	fs.Uint64Var(&def.Seed, "seed", def.Seed, "generator seed; the same seed sends the same events")
	fs.IntVar(&def.Teams, "teams", def.Teams, "simulated teams")
	fs.Float64Var(&def.DuplicateShare, "duplicates", def.DuplicateShare, "share of re-sent earlier events")
	fs.Float64Var(&def.InvalidShare, "invalid", def.InvalidShare, "share of invalid events")
	fs.Float64Var(&def.UnknownModelShare, "unknown-models", def.UnknownModelShare, "share of valid events with an unknown model")
	fs.Float64Var(&def.LateShare, "late", def.LateShare, "share of valid events stamped hours late")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.gen = def
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	if c.url == "" {
		errs = append(errs, errors.New("-url is empty"))
	}
	if c.events < 0 || c.duration < 0 || (c.events == 0 && c.duration == 0) {
		errs = append(errs, fmt.Errorf("-events (%d) and -duration (%s) must not be negative, and one of them positive",
			c.events, c.duration))
	}
	if c.batch < 1 {
		errs = append(errs, fmt.Errorf("-batch (%d) must be at least 1", c.batch))
	}
	if c.clients < 1 {
		errs = append(errs, fmt.Errorf("-clients (%d) must be at least 1", c.clients))
	}
	if c.rate < 0 {
		errs = append(errs, fmt.Errorf("-rate (%v) must not be negative", c.rate))
	}
	if c.format != "ndjson" && c.format != "array" {
		errs = append(errs, fmt.Errorf("-format %q is not ndjson or array", c.format))
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout (%s) must be positive", c.timeout))
	}
	// The generator's clock is set when the run starts; check the rest of its config now.
	gen := c.gen
	gen.Now = time.Unix(0, 0)
	if err := gen.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
