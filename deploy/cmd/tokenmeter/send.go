package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
)

// sendConfig is what "tokenmeter send" was asked for.
type sendConfig struct {
	URL   string // the collector's ingest URL
	N     int    // events to send
	Batch int    // events per request body
	Seed  uint64 // generator seed: the same seed sends the same events
	Quiet bool   // no progress on stderr
}

// maxSendBatch is the collector's default limit of events per body.
const maxSendBatch = 10_000

// Validate reports every invalid field.
func (c sendConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("-url %q: want an http or https URL", c.URL))
	}
	if c.N < 1 {
		errs = append(errs, fmt.Errorf("-n (%d) must be at least 1", c.N))
	}
	if c.Batch < 1 || c.Batch > maxSendBatch {
		errs = append(errs, fmt.Errorf("-batch (%d) must be between 1 and %d", c.Batch, maxSendBatch))
	}
	return errors.Join(errs...)
}

// runSend implements "tokenmeter send": synthetic test events (deploy/loadgen: many teams
// and models, duplicates, a few invalid events) to a collector, with progress on stderr.
func runSend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	var c sendConfig
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080/v1/events", "collector ingest URL")
	fs.IntVar(&c.N, "n", 1000, "events to send")
	fs.IntVar(&c.Batch, "batch", 1000, "events per request body")
	fs.Uint64Var(&c.Seed, "seed", uint64(time.Now().UnixNano()), "generator seed (the same seed sends the same events)")
	fs.BoolVar(&c.Quiet, "q", false, "print no progress")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return send(ctx, c, os.Stdout, os.Stderr, time.Now)
}

// send posts c.N generated events in bodies of c.Batch, prints every rejection and a summary
// on stdout, and progress on stderr (unless c.Quiet) as clock tells the time.
func send(ctx context.Context, c sendConfig, stdout, stderr io.Writer, clock func() time.Time) error {
	if err := c.Validate(); err != nil {
		return err
	}
	cfg := loadgen.DefaultConfig(time.Now().UTC())
	cfg.Seed = c.Seed
	gen := loadgen.New(cfg)
	if c.Quiet {
		stderr = io.Discard
	}
	prog := newProgress(stderr, clock, "send", "events", int64(c.N))
	accepted, rejected := 0, 0
	for sent := 0; sent < c.N; {
		items := make([]loadgen.Item, min(c.Batch, c.N-sent))
		for i := range items {
			items[i] = gen.Next()
		}
		r, err := postEvents(ctx, c.URL, loadgen.NDJSON(items))
		if err != nil {
			return fmt.Errorf("after %d of %d events: %w", sent, c.N, err)
		}
		sent += len(items)
		accepted += r.Accepted
		rejected += len(r.Rejected)
		for _, rj := range r.Rejected {
			fmt.Fprintf(stdout, "rejected %s: %s\n", rj.ID, rj.Error)
		}
		prog.Add(int64(len(items)))
	}
	prog.Finish()
	fmt.Fprintf(stdout, "sent %d events: %d accepted, %d rejected (seed %d)\n", c.N, accepted, rejected, c.Seed)
	return nil
}
