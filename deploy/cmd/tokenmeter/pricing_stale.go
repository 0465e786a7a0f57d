package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

const pricingStaleUsage = "usage: tokenmeter pricing stale [-clickhouse DSN] [-database DB] [-max-share P] [-all]"

// staleRow is one row of the view price_staleness.
type staleRow struct {
	provider, model    string
	effective, checked time.Time
	ageDays            int32
	windowDays         uint16
	stale              bool
	spend, total       decimal.Decimal
}

// readStaleness reads db.price_staleness, stale rows first by spend.
func readStaleness(ctx context.Context, conn driver.Conn, db string) ([]staleRow, error) {
	rows, err := conn.Query(ctx, "SELECT provider, model, effective, checked, age_days, check_window_days, stale, spend_30d_usd, total_30d_usd FROM "+
		db+".price_staleness ORDER BY stale DESC, spend_30d_usd DESC, provider, model, effective")
	if err != nil {
		return nil, fmt.Errorf("read %s.price_staleness: %w", db, err)
	}
	defer rows.Close()
	var out []staleRow
	for rows.Next() {
		var r staleRow
		var stale uint8
		if err := rows.Scan(&r.provider, &r.model, &r.effective, &r.checked, &r.ageDays, &r.windowDays, &stale, &r.spend, &r.total); err != nil {
			return nil, fmt.Errorf("read %s.price_staleness: %w", db, err)
		}
		r.stale = stale == 1
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s.price_staleness: %w", db, err)
	}
	return out, nil
}

// percent prints part/whole as a percentage with two decimals, 0 when whole is 0.
func percent(part, whole decimal.Decimal) string {
	if whole.IsZero() {
		return "0.00%"
	}
	return part.Mul(decimal.NewFromInt(100)).DivRound(whole, 2).StringFixed(2) + "%"
}

// pricingStale implements "tokenmeter pricing stale": it prints the price rows that carried
// spend in the last 30 days (every row with -all), stale ones first, and fails when the
// stale rows' share of that spend exceeds -max-share, so that cron or CI can run it.
func pricingStale(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("pricing stale", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	maxShareText := fs.String("max-share", "1", "fail when stale rows carry more than this fraction of the last 30 days' spend (0.05 = 5%)")
	all := fs.Bool("all", false, "print every price row, also those without spend")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errors.New(pricingStaleUsage)
	}
	maxShare, err := decimal.NewFromString(*maxShareText)
	if err != nil || maxShare.IsNegative() || maxShare.GreaterThan(decimal.NewFromInt(1)) {
		return fmt.Errorf("-max-share %q: want a fraction from 0 to 1", *maxShareText)
	}
	ctx, stop := interruptible()
	defer stop()
	conn, err := openClickHouse(ctx, *dsn, *db, false)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := readStaleness(ctx, conn, *db)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s.price_staleness is empty: no catalogue was published (run tokenmeter pricing publish)", *db)
	}
	return printStaleness(w, rows, maxShare, *all)
}

// printStaleness prints the rows and the summary, and returns an error when the stale rows'
// share of the spend exceeds maxShare.
func printStaleness(w io.Writer, rows []staleRow, maxShare decimal.Decimal, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "stale\tprovider\tmodel\teffective\tchecked\tage days\twindow days\tspend 30d USD\tshare\n")
	total := rows[0].total
	staleSpend, listed, stale, staleWithSpend := decimal.Zero, decimal.Zero, 0, 0
	for _, r := range rows {
		listed = listed.Add(r.spend)
		if r.stale {
			stale++
			staleSpend = staleSpend.Add(r.spend)
			if !r.spend.IsZero() {
				staleWithSpend++
			}
		}
		if !all && r.spend.IsZero() {
			continue
		}
		mark, checked := "", r.checked.Format(time.DateOnly)
		if r.stale {
			mark = "STALE"
		}
		if r.checked.Unix() == 0 {
			checked = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", mark, r.provider, r.model, r.effective.Format(time.DateOnly),
			checked, r.ageDays, r.windowDays, money(r.spend), percent(r.spend, total))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d of %d price rows stale, %d of them priced spend in the last 30 days: %s of %s USD (%s)\n",
		stale, len(rows), staleWithSpend, money(staleSpend), money(total), percent(staleSpend, total))
	if other := total.Sub(listed); !other.IsZero() {
		fmt.Fprintf(w, "%s USD (%s) priced by no published row: organisation overrides, or a catalogue other than the one published\n",
			money(other), percent(other, total))
	}
	if staleSpend.GreaterThan(maxShare.Mul(total)) {
		return fmt.Errorf("stale price rows priced %s of the last 30 days' spend, more than -max-share %s: check them against the references and update their checked dates",
			percent(staleSpend, total), maxShare.String())
	}
	return nil
}
