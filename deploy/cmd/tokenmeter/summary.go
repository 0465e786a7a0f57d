package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

func runSummary(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("summary", flag.ContinueOnError)
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	since := fs.Duration("since", 24*time.Hour, "how far back to sum")
	limit := fs.Int("top", 10, "lines per breakdown")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts, err := clickhouse.ParseDSN(*dsn)
	if err != nil {
		return redact.DSNError(err, *dsn)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	r, err := summary.Query(ctx, conn, *db, time.Now().Add(-*since), *limit)
	if err != nil {
		return err
	}
	summary.Print(os.Stdout, r)
	return nil
}
