package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// runSpend implements "tokenmeter spend": today's and the month's spend by team and model, the
// top movers and the unpriced models.
func runSpend(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("spend", flag.ContinueOnError)
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	day := fs.String("day", "", "the day to report as today, YYYY-MM-DD (default: today, UTC)")
	limit := fs.Int("top", 10, "lines per list")
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Now().UTC()
	if *day != "" {
		d, err := time.Parse(time.DateOnly, *day)
		if err != nil {
			return fmt.Errorf("-day %q: want YYYY-MM-DD", *day)
		}
		now = d
	}
	if *limit < 1 || *limit > 1000 {
		return fmt.Errorf("-top %d: want 1..1000", *limit)
	}
	opts, err := clickhouse.ParseDSN(*dsn)
	if err != nil {
		return fmt.Errorf("ClickHouse DSN: %w", redact.DSNError(err, *dsn))
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return fmt.Errorf("open ClickHouse %s: %w", redact.DSN(*dsn), redact.DSNError(err, *dsn))
	}
	defer conn.Close()
	s, err := summary.QuerySpend(ctx, conn, *db, now, *limit)
	if err != nil {
		return err
	}
	summary.PrintSpend(stdout, s)
	return nil
}
