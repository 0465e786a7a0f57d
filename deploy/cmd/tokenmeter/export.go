package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/decimal128"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// exportColumns are the columns of a showback export, in order, in CSV and in Parquet.
func exportColumns() []string {
	return []string{"month", "team", "cost_center", "feature", "env", "provider", "model",
		"events", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
		"cost_usd", "savings_usd", "unpriced_events"}
}

// moneyScale is the scale of exported money: ClickHouse's Decimal(38, 12), exact.
const moneyScale = 12

// exportConfig is what "tokenmeter export" was asked for.
type exportConfig struct {
	Month  string // YYYY-MM
	Format string // csv or parquet
	Out    string // file; "-" is standard output (CSV only)
}

// Validate reports every invalid field.
func (c exportConfig) Validate() error {
	var errs []error
	if _, err := time.Parse("2006-01", c.Month); err != nil {
		errs = append(errs, fmt.Errorf("-month %q: want YYYY-MM", c.Month))
	}
	if c.Format != "csv" && c.Format != "parquet" {
		errs = append(errs, fmt.Errorf("-format %q: want csv or parquet", c.Format))
	}
	if c.Out == "-" && c.Format == "parquet" {
		errs = append(errs, errors.New("-o -: Parquet is written to a file, not to standard output"))
	}
	return errors.Join(errs...)
}

// runExport implements "tokenmeter export": a month's showback / chargeback per team, cost
// centre, feature, env and model, as CSV or Parquet, with progress on stderr.
func runExport(ctx context.Context, args []string, progress io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	cfg := exportConfig{}
	fs.StringVar(&cfg.Month, "month", time.Now().UTC().Format("2006-01"), "month to export, YYYY-MM")
	fs.StringVar(&cfg.Format, "format", "csv", "csv or parquet")
	fs.StringVar(&cfg.Out, "o", "", `output file (default showback-MONTH.FORMAT; "-" = standard output, CSV only)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Out == "" {
		cfg.Out = "showback-" + cfg.Month + "." + cfg.Format
	}
	if err := cfg.Validate(); err != nil {
		return err
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
	return export(ctx, conn, *db, cfg, progress)
}

// export writes the showback of cfg.Month to cfg.Out. A file is written under a temporary name
// and renamed when complete, so a failed export leaves no partial file behind.
func export(ctx context.Context, conn driver.Conn, db string, cfg exportConfig, progress io.Writer) error {
	month, err := time.Parse("2006-01", cfg.Month)
	if err != nil {
		return fmt.Errorf("-month %q: want YYYY-MM", cfg.Month)
	}
	var out io.Writer = os.Stdout
	var tmp *os.File
	if cfg.Out != "-" {
		if tmp, err = os.CreateTemp(dirOf(cfg.Out), ".showback-*"); err != nil {
			return fmt.Errorf("export to %s: %w", cfg.Out, err)
		}
		defer func() {
			if tmp != nil {
				_ = tmp.Close()
				_ = os.Remove(tmp.Name())
			}
		}()
		// Only a writer: the Parquet writer closes what it writes to when it can, and the file
		// must stay open until it is complete.
		out = struct{ io.Writer }{tmp}
	}
	var sink showbackSink
	if cfg.Format == "parquet" {
		sink, err = newParquetSink(out)
		if err != nil {
			return fmt.Errorf("export to %s: %w", cfg.Out, err)
		}
	} else {
		sink = newCSVSink(out)
	}
	fmt.Fprintf(progress, "export: reading the showback of %s from ClickHouse database %s\n", cfg.Month, db)
	start := time.Now()
	rows, teams, total := 0, map[string]decimal.Decimal{}, decimal.Zero
	err = summary.Showback(ctx, conn, db, month, func(r summary.ShowbackRow) error {
		rows++
		teams[r.Team] = teams[r.Team].Add(r.Cost)
		total = total.Add(r.Cost)
		if rows%10000 == 0 {
			fmt.Fprintf(progress, "export: %d rows…\n", rows)
		}
		return sink.add(r)
	})
	if err == nil {
		err = sink.close()
	}
	if err != nil {
		return fmt.Errorf("export %s to %s: %w", cfg.Month, cfg.Out, err)
	}
	if tmp != nil {
		// CreateTemp makes the file private; an export is a report to share, like any file.
		if err := tmp.Chmod(0o644); err != nil {
			return fmt.Errorf("export to %s: %w", cfg.Out, err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("export to %s: %w", cfg.Out, err)
		}
		if err := os.Rename(tmp.Name(), cfg.Out); err != nil {
			return fmt.Errorf("export to %s: %w", cfg.Out, err)
		}
		tmp = nil
	}
	fmt.Fprintf(progress, "export: wrote %d rows (%d teams, %s) to %s in %s\n",
		rows, len(teams), summary.Money(total), cfg.Out, time.Since(start).Round(time.Millisecond))
	printTeamTotals(progress, teams)
	return nil
}

// printTeamTotals shows what each team is charged, most first.
func printTeamTotals(w io.Writer, teams map[string]decimal.Decimal) {
	names := make([]string, 0, len(teams))
	for t := range teams {
		names = append(names, t)
	}
	sort.Slice(names, func(i, j int) bool {
		if c := teams[names[i]].Cmp(teams[names[j]]); c != 0 {
			return c > 0
		}
		return names[i] < names[j]
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, t := range names {
		fmt.Fprintf(tw, "%s\t%s\t\n", t, summary.Money(teams[t]))
	}
	_ = tw.Flush()
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if os.IsPathSeparator(path[i]) {
			return path[:i+1]
		}
	}
	return "."
}

// showbackSink writes showback rows in one format.
type showbackSink interface {
	add(summary.ShowbackRow) error
	close() error
}

type csvSink struct{ w *csv.Writer }

func newCSVSink(w io.Writer) *csvSink {
	s := &csvSink{w: csv.NewWriter(w)}
	_ = s.w.Write(exportColumns())
	return s
}

func (s *csvSink) add(r summary.ShowbackRow) error {
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	t := cellText
	return s.w.Write([]string{r.Month, t(r.Team), t(r.CostCenter), t(r.Feature), t(r.Env), t(r.Provider), t(r.Model),
		u(r.Events), u(r.InputTokens), u(r.OutputTokens), u(r.CachedInputTokens), u(r.CacheWriteTokens), u(r.ReasoningTokens),
		r.Cost.StringFixed(moneyScale), r.Savings.StringFixed(moneyScale), u(r.Unpriced)})
}

// cellText neutralises a text cell that a spreadsheet would run as a formula: the tags,
// provider and model names come from clients, and a team named "=HYPERLINK(…)" must stay
// text when finance opens the export. As OWASP's CSV-injection guidance says, a cell that
// starts with = + - @, a tab or a carriage return gets a leading apostrophe (which
// spreadsheets show as text and hide). Numbers are written by us and left alone.
func cellText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (s *csvSink) close() error {
	s.w.Flush()
	return s.w.Error()
}

// parquetSink writes Parquet through Arrow: strings, uint64 counters and money as
// decimal(38, 12), exact, in row groups of up to parquetBatch rows.
type parquetSink struct {
	fw *pqarrow.FileWriter
	b  *array.RecordBuilder
	n  int
}

const parquetBatch = 64 << 10

// ShowbackSchema is the Arrow schema of a Parquet showback export.
func showbackSchema() *arrow.Schema {
	money := &arrow.Decimal128Type{Precision: 38, Scale: moneyScale}
	var fields []arrow.Field
	for _, name := range exportColumns() {
		var t arrow.DataType
		switch name {
		case "month":
			t = arrow.FixedWidthTypes.Date32
		case "team", "cost_center", "feature", "env", "provider", "model":
			t = arrow.BinaryTypes.String
		case "cost_usd", "savings_usd":
			t = money
		default:
			t = arrow.PrimitiveTypes.Uint64
		}
		fields = append(fields, arrow.Field{Name: name, Type: t})
	}
	return arrow.NewSchema(fields, nil)
}

func newParquetSink(w io.Writer) (*parquetSink, error) {
	schema := showbackSchema()
	fw, err := pqarrow.NewFileWriter(schema, w,
		parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd)),
		pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return nil, fmt.Errorf("start Parquet file: %w", err)
	}
	return &parquetSink{fw: fw, b: array.NewRecordBuilder(memory.DefaultAllocator, schema)}, nil
}

func (s *parquetSink) add(r summary.ShowbackRow) error {
	month, err := time.Parse(time.DateOnly, r.Month)
	if err != nil {
		return fmt.Errorf("month %q: %w", r.Month, err)
	}
	cost, err := decimal128Of(r.Cost)
	if err != nil {
		return err
	}
	savings, err := decimal128Of(r.Savings)
	if err != nil {
		return err
	}
	f := s.b.Fields()
	f[0].(*array.Date32Builder).Append(arrow.Date32FromTime(month))
	for i, v := range []string{r.Team, r.CostCenter, r.Feature, r.Env, r.Provider, r.Model} {
		f[1+i].(*array.StringBuilder).Append(v)
	}
	for i, v := range []uint64{r.Events, r.InputTokens, r.OutputTokens, r.CachedInputTokens, r.CacheWriteTokens, r.ReasoningTokens} {
		f[7+i].(*array.Uint64Builder).Append(v)
	}
	f[13].(*array.Decimal128Builder).Append(cost)
	f[14].(*array.Decimal128Builder).Append(savings)
	f[15].(*array.Uint64Builder).Append(r.Unpriced)
	if s.n++; s.n == parquetBatch {
		return s.flush()
	}
	return nil
}

func (s *parquetSink) flush() error {
	rec := s.b.NewRecord()
	defer rec.Release()
	s.n = 0
	if err := s.fw.Write(rec); err != nil {
		return fmt.Errorf("write Parquet row group: %w", err)
	}
	return nil
}

func (s *parquetSink) close() error {
	defer s.b.Release()
	if s.n > 0 {
		if err := s.flush(); err != nil {
			return err
		}
	}
	if err := s.fw.Close(); err != nil {
		return fmt.Errorf("finish Parquet file: %w", err)
	}
	return nil
}

// decimal128Of converts an exact amount to a decimal(38, 12) value; more than 12 decimals or
// more than 38 digits is an error, never a rounding.
func decimal128Of(d decimal.Decimal) (decimal128.Num, error) {
	scaled := d.Shift(moneyScale)
	if !scaled.Equal(scaled.Truncate(0)) {
		return decimal128.Num{}, fmt.Errorf("amount %s has more than %d decimals", d, moneyScale)
	}
	n := scaled.BigInt()
	limit := new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil)
	if new(big.Int).Abs(n).Cmp(limit) >= 0 {
		return decimal128.Num{}, fmt.Errorf("amount %s exceeds decimal(38, %d)", d, moneyScale)
	}
	return decimal128.FromBigInt(n), nil
}
