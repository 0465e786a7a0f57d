package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/deploy/dashboard"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// startDashboard serves the dashboard on addr until ctx is done, reading ClickHouse at dsn and
// the alerter's buckets through nc (nil: no alerts or budgets). It returns the address it
// listens on once it does.
func startDashboard(ctx context.Context, addr, dsn, db string, nc *nats.Conn, log *slog.Logger) (net.Addr, <-chan error, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("dashboard: ClickHouse DSN: %w", redact.DSNError(err, dsn))
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("dashboard: open ClickHouse: %w", err)
	}
	var js jetstream.JetStream
	if nc != nil {
		if js, err = jetstream.New(nc); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("dashboard: JetStream: %w", err)
		}
	}
	d, err := dashboard.New(dashboard.Config{Database: db, Logger: log}, conn, js)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("listen for the dashboard on %s: %w", addr, err)
	}
	done := make(chan error, 1)
	go func() {
		err := d.Serve(ctx, ln)
		_ = conn.Close()
		done <- err
	}()
	return ln.Addr(), done, nil
}

// runDashboard implements "tokenmeter dashboard": the dashboard alone, against a ClickHouse and
// (for alerts and budgets) a NATS server that the pipeline runs elsewhere.
func runDashboard(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	addr := fs.String("addr", envOr("TOKENMETER_DASHBOARD_ADDR", "127.0.0.1:8090"), "dashboard HTTP address")
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	natsURL := fs.String("nats", os.Getenv("TOKENMETER_NATS_URL"), `NATS URL holding the alerter's buckets ("" = show no alerts or budgets)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var nc *nats.Conn
	if *natsURL != "" {
		var err error
		if nc, err = nats.Connect(*natsURL, nats.Name("tokenmeter-dashboard"), nats.MaxReconnects(-1)); err != nil {
			return fmt.Errorf("connect to NATS %s: %w", *natsURL, err)
		}
		defer nc.Close()
	}
	at, done, err := startDashboard(ctx, *addr, *dsn, *db, nc, log)
	if err != nil {
		return err
	}
	fmt.Printf("dashboard: http://%s/\n", at)
	err = <-done
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
