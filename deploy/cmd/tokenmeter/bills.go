package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/deploy/bills"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

const billsUsage = `usage: tokenmeter bills <command> [flags]

commands:
  sync                 import OpenAI and Anthropic usage and cost reports of the last days (-from, -to)
  import -source S F   import a CSV billing export (columns: day, provider, model, token_class, tokens, cost_usd; optionally project, api_key, service_tier, line_item)
  diff -month YYYY-MM  metered beside billed per provider and model (-daily: per day)
`

func runBills(ctx context.Context, args []string) error {
	return billsTo(ctx, os.Stdout, os.Stderr, time.Now, args)
}

// billsTo implements "tokenmeter bills": sync, import and diff. clock tells the time (the
// partial day, the default range).
func billsTo(ctx context.Context, w, stderr io.Writer, clock func() time.Time, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, billsUsage)
		return errors.New("want a command: sync, import or diff")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("bills "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	switch cmd {
	case "sync":
		return billsSync(ctx, w, fs, dsn, db, clock, args)
	case "import":
		return billsImport(ctx, w, fs, dsn, db, clock, args)
	case "diff":
		return billsDiff(ctx, w, fs, dsn, db, args)
	case "help", "-h", "--help":
		fmt.Fprint(w, billsUsage)
		return nil
	}
	fmt.Fprint(stderr, billsUsage)
	return fmt.Errorf("unknown command %q", cmd)
}

func openClickHouse(ctx context.Context, dsn, db string, migrateIt bool) (driver.Conn, error) {
	if err := migrate.ValidDatabase(db); err != nil {
		return nil, err
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse ClickHouse DSN: %w", redact.DSNError(err, dsn))
	}
	chcluster.WriteOptions(opts)
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse: %w", err)
	}
	if migrateIt {
		if _, err := migrate.Apply(ctx, conn, db); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return conn, nil
}

// dayRange reads -from and -to (YYYY-MM-DD, -to exclusive); without -from, the last days
// days up to and including today.
func dayRange(from, to string, days int, now time.Time) (bills.Range, error) {
	today := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day(), 0, 0, 0, 0, time.UTC)
	r := bills.Range{From: today.AddDate(0, 0, 1-days), To: today.AddDate(0, 0, 1)}
	var errs []error
	for _, f := range []struct {
		name, text string
		t          *time.Time
	}{{"-from", from, &r.From}, {"-to", to, &r.To}} {
		if f.text == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, f.text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want YYYY-MM-DD", f.name, f.text))
		}
		*f.t = t
	}
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	return r, r.Validate()
}

// secret returns the value of the environment variable env, or the first line of file, or
// "" when neither is set. The value is never printed.
func secret(file, env string) (string, error) {
	if file != "" {
		// A FIFO or a device would hang the read: only a regular file holds a key.
		if fi, err := os.Stat(file); err != nil {
			return "", fmt.Errorf("read the key file: %w", err)
		} else if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("key file %s is not a regular file", file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read the key file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if s := strings.TrimSpace(line); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("key file %s is empty", file)
	}
	return strings.TrimSpace(os.Getenv(env)), nil
}

func billsSync(ctx context.Context, w io.Writer, fs *flag.FlagSet, dsn, db *string, clock func() time.Time, args []string) error {
	from := fs.String("from", "", "first day, YYYY-MM-DD (default: -days before today)")
	to := fs.String("to", "", "day after the last, YYYY-MM-DD (default: tomorrow; today is imported as a partial day)")
	days := fs.Int("days", 7, "without -from, the number of days up to today to import again (catches the providers' late corrections)")
	openaiFile := fs.String("openai-admin-key-file", "", "file holding the OpenAI admin key (default: $TOKENMETER_OPENAI_ADMIN_KEY)")
	anthropicFile := fs.String("anthropic-admin-key-file", "", "file holding the Anthropic admin key (default: $TOKENMETER_ANTHROPIC_ADMIN_KEY)")
	openaiURL := fs.String("openai-url", "https://api.openai.com", "OpenAI API base URL")
	anthropicURL := fs.String("anthropic-url", "https://api.anthropic.com", "Anthropic API base URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *days < 1 {
		return fmt.Errorf("-days %d: want at least 1", *days)
	}
	now := clock()
	r, err := dayRange(*from, *to, *days, now)
	if err != nil {
		return err
	}
	openaiKey, err := secret(*openaiFile, "TOKENMETER_OPENAI_ADMIN_KEY")
	if err != nil {
		return fmt.Errorf("openai admin key: %w", err)
	}
	anthropicKey, err := secret(*anthropicFile, "TOKENMETER_ANTHROPIC_ADMIN_KEY")
	if err != nil {
		return fmt.Errorf("anthropic admin key: %w", err)
	}
	var fetchers []bills.Fetcher
	var names []string
	client := bills.Client{Now: clock}
	if openaiKey != "" {
		fetchers = append(fetchers, &bills.OpenAI{Client: client, BaseURL: *openaiURL, AdminKey: openaiKey})
		names = append(names, "openai")
	}
	if anthropicKey != "" {
		fetchers = append(fetchers, &bills.Anthropic{Client: client, BaseURL: *anthropicURL, AdminKey: anthropicKey})
		names = append(names, "anthropic")
	}
	if len(fetchers) == 0 {
		return errors.New("no admin key: set TOKENMETER_OPENAI_ADMIN_KEY or -openai-admin-key-file, TOKENMETER_ANTHROPIC_ADMIN_KEY or -anthropic-admin-key-file")
	}
	conn, err := openClickHouse(ctx, *dsn, *db, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := bills.Sync(ctx, conn, *db, fetchers, r, now)
	if err != nil && res.Periods == 0 {
		return err
	}
	// After a failure, what the fetchers before it stored is kept: say so before the error.
	fmt.Fprintf(w, "%s %s .. %s: %d periods, %d written (%d rows), %d unchanged\n", strings.Join(names, "+"),
		r.From.Format(time.DateOnly), r.To.AddDate(0, 0, -1).Format(time.DateOnly), res.Periods, res.Written, res.Rows, res.Unchanged)
	return err
}

func billsImport(ctx context.Context, w io.Writer, fs *flag.FlagSet, dsn, db *string, clock func() time.Time, args []string) error {
	source := fs.String("source", "csv", "the source name the rows are stored under (bedrock_cur, vertex_billing, …); a re-import replaces the days of the file for this source")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("want one CSV file (or - for standard input)")
	}
	if *source == "" || strings.ContainsAny(*source, " \t\n") {
		return fmt.Errorf("-source %q: want a name without spaces", *source)
	}
	in := io.Reader(os.Stdin)
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	rep, err := bills.ParseCSV(in, *source)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	conn, err := openClickHouse(ctx, *dsn, *db, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := bills.Store(ctx, conn, *db, rep, bills.NewRun(clock()))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %d days, %d written (%d rows), %d unchanged\n", *source, res.Periods, res.Written, res.Rows, res.Unchanged)
	return nil
}

func billsDiff(ctx context.Context, w io.Writer, fs *flag.FlagSet, dsn, db *string, args []string) error {
	month := fs.String("month", "", "the month, YYYY-MM (required)")
	daily := fs.Bool("daily", false, "one line per day, provider and model")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, err := time.Parse("2006-01", *month)
	if err != nil {
		return fmt.Errorf("-month %q: want YYYY-MM", *month)
	}
	r := bills.Range{From: m, To: m.AddDate(0, 1, 0)}
	conn, err := openClickHouse(ctx, *dsn, *db, false)
	if err != nil {
		return err
	}
	defer conn.Close()
	lines, err := bills.Diff(ctx, conn, *db, r, *daily)
	if err != nil {
		return err
	}
	if len(lines) == 0 {
		fmt.Fprintf(w, "nothing metered or billed in %s\n", *month)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "provider\tmodel\tevents\tunpriced\testimated\tmetered tokens\tbilled tokens\tmetered USD\tbilled USD\tdifference USD\tshare\t\n"
	if *daily {
		head = "day\t" + head
	}
	fmt.Fprint(tw, head)
	total := bills.DiffLine{MeteredCostUSD: decimal.Zero, BilledCostUSD: decimal.Zero}
	partial := false
	for _, l := range lines {
		note := ""
		if l.Partial {
			note, partial = " *", true
		}
		if *daily {
			fmt.Fprintf(tw, "%s\t", l.Day)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s%s\t\n", l.Provider, orDash(l.Model), l.MeteredEvents, l.UnpricedEvents,
			l.EstimatedEvents, l.MeteredTokens, l.BilledTokens, money(l.MeteredCostUSD), money(l.BilledCostUSD), money(l.DifferenceUSD()), l.Share(), note)
		total.MeteredEvents += l.MeteredEvents
		total.UnpricedEvents += l.UnpricedEvents
		total.EstimatedEvents += l.EstimatedEvents
		total.MeteredTokens += l.MeteredTokens
		total.BilledTokens += l.BilledTokens
		total.MeteredCostUSD = total.MeteredCostUSD.Add(l.MeteredCostUSD)
		total.BilledCostUSD = total.BilledCostUSD.Add(l.BilledCostUSD)
	}
	if *daily {
		fmt.Fprint(tw, "\t")
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", total.MeteredEvents, total.UnpricedEvents, total.EstimatedEvents, total.MeteredTokens, total.BilledTokens,
		money(total.MeteredCostUSD), money(total.BilledCostUSD), money(total.DifferenceUSD()), total.Share())
	if err := tw.Flush(); err != nil {
		return err
	}
	if partial {
		fmt.Fprintln(w, "* the provider's report of some day was partial when imported (the day had not ended); run tokenmeter bills sync again")
	}
	return nil
}

// money prints an amount in USD with 6 decimals (a millionth of a dollar), rounded half away
// from zero; the exact amounts are in billing_reconciliation.
func money(d decimal.Decimal) string { return d.StringFixed(6) }
