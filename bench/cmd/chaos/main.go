// Command chaos holds the operator side of the fault-injection work: `chaos reconcile`
// compares what USAGE_RAW accepted, partition by partition (sequence range, messages,
// distinct event ids), with what ClickHouse's usage_events holds, and lists the ids missing,
// stored twice, or stored without a raw message. It exits 1 when an id is missing or doubled.
// The fault scenarios themselves are tests: go test -tags chaos ./bench/chaos/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/bench/chaos"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = "usage: chaos reconcile [-nats URL] [-clickhouse DSN] [-database NAME] [-partitions N] [-timeout D]"

// config is the reconcile command's configuration.
type config struct {
	natsURL, dsn, database string
	partitions             int
	timeout                time.Duration
}

func (c config) validate() error {
	var errs []error
	if c.natsURL == "" {
		errs = append(errs, errors.New("-nats is empty"))
	}
	if _, err := clickhouse.ParseDSN(c.dsn); err != nil {
		errs = append(errs, fmt.Errorf("-clickhouse %q: %w", c.dsn, err))
	}
	if c.database == "" {
		errs = append(errs, errors.New("-database is empty"))
	}
	if c.partitions < 1 || c.partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("-partitions (%d) must be between 1 and 65536", c.partitions))
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout (%v) must be positive", c.timeout))
	}
	return errors.Join(errs...)
}

func parse(args []string, stderr io.Writer) (config, error) {
	if len(args) == 0 || args[0] != "reconcile" {
		return config{}, errors.New(usage)
	}
	fs := flag.NewFlagSet("chaos reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.natsURL, "nats", nats.DefaultURL, "NATS server URL")
	fs.StringVar(&c.dsn, "clickhouse", "clickhouse://127.0.0.1:9000", "ClickHouse DSN")
	fs.StringVar(&c.database, "database", "tokenmeter", "ClickHouse database")
	fs.IntVar(&c.partitions, "partitions", stream.DefaultPartitions, "partitions of USAGE_RAW")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after")
	if err := fs.Parse(args[1:]); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q; %s", fs.Args(), usage)
	}
	return c, c.validate()
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	parts, err := reconcile(ctx, c)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := chaos.WriteReport(stdout, parts); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, p := range parts {
		if !p.OK() {
			return 1
		}
	}
	return 0
}

func reconcile(ctx context.Context, c config) ([]chaos.Partition, error) {
	nc, err := nats.Connect(c.natsURL, nats.Name("tokenmeter-reconcile"))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", c.natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	opts, _ := clickhouse.ParseDSN(c.dsn) // validated
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse %s: %w", c.dsn, err)
	}
	defer conn.Close()
	return chaos.Reconcile(ctx, js, conn, c.database, c.partitions)
}
