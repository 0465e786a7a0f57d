package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/deploy/reconcile"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// runReconcile implements "tokenmeter reconcile": it compares what USAGE_RAW accepted with
// what usage_events holds, partition by partition, prints the report on stdout, and fails
// (exit status 1) when an accepted id is missing or stored twice.
func runReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c reconcile.Config
	fs.StringVar(&c.NATSURL, "nats", envOr("TOKENMETER_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL of the pipeline (its USAGE_RAW stream)")
	fs.StringVar(&c.ClickHouseDSN, "clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	fs.StringVar(&c.Database, "database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	fs.IntVar(&c.Partitions, "partitions", stream.DefaultPartitions, "partitions of USAGE_RAW; every stage must agree")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after")
	natsEnv := natsFlags(fs, &c.NATS, natsauth.Reconcile)
	if err := fs.Parse(args); err != nil {
		return err
	}
	errs := []error{natsEnv()}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if *timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout (%v) must be positive", *timeout))
	}
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	parts, err := reconcile.Run(ctx, c)
	if err != nil {
		return err
	}
	if err := reconcile.WriteReport(stdout, parts); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return reconcile.Err(parts)
}
