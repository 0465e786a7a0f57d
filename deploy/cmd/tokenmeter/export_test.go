package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// novemberCSV is the showback of November 2026 of the seeded events (summarytest).
const novemberCSV = `month,team,cost_center,feature,env,provider,model,events,input_tokens,output_tokens,cached_input_tokens,cache_write_tokens,reasoning_tokens,cost_usd,savings_usd,unpriced_events
2026-11-01,(untagged),(untagged),(untagged),dev,openai,gpt-4o,1,300,30,0,0,0,0.500000000000,0.000000000000,0
2026-11-01,search,(untagged),(untagged),(untagged),acme,acme-llm-7,1,10,10,0,0,0,0.000000000000,0.000000000000,1
2026-11-01,search,cc-search,summarize,prod,openai,gpt-4o,4,3300,330,0,0,0,3.500000000000,0.100000000000,0
2026-11-01,support,cc-support,chat,prod,anthropic,claude-sonnet-4-5,2,6000,600,0,0,0,6.250000000000,0.000000000000,0
2026-11-01,support,cc-support,chat,staging,anthropic,claude-sonnet-4-5,1,1,1,0,0,0,0.000000000001,0.000000000000,0
`

// elapsed hides the one figure of the progress output that changes from run to run.
var elapsed = regexp.MustCompile(` in [0-9.]+[µm]?s\n`)

func TestExportCSV(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "nov.csv")
	var progress bytes.Buffer
	if err := export(ctx, conn, db, exportConfig{Month: "2026-11", Format: "csv", Out: out}, &progress); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != novemberCSV {
		t.Errorf("CSV:\n%s\nwant:\n%s", got, novemberCSV)
	}
	wantProgress := "export: reading the showback of 2026-11 from ClickHouse database " + db + "\n" +
		"export: wrote 5 rows (3 teams, $10.2500) to " + out + " in X\n" +
		"     support  $6.2500\n" +
		"      search  $3.5000\n" +
		"  (untagged)  $0.5000\n"
	if p := elapsed.ReplaceAllString(progress.String(), " in X\n"); p != wantProgress {
		t.Errorf("progress:\n%s\nwant:\n%s", p, wantProgress)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("export file mode: %v, %v; want -rw-r--r--", st.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("the export left %d files behind, want only %s", len(entries), out)
	}

	// October holds one event, at its last second; December nothing.
	progress.Reset()
	if err := export(ctx, conn, db, exportConfig{Month: "2026-10", Format: "csv", Out: out}, &progress); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(out)
	want := strings.SplitN(novemberCSV, "\n", 2)[0] + "\n2026-10-01,search,cc-search,summarize,prod,openai,gpt-4o,1,9000,900,0,0,0,100.000000000000,0.000000000000,0\n"
	if string(got) != want {
		t.Errorf("October CSV:\n%s\nwant:\n%s", got, want)
	}
	if err := export(ctx, conn, db, exportConfig{Month: "2026-12", Format: "csv", Out: out}, &progress); err != nil {
		t.Fatal(err)
	}
	if got, _ = os.ReadFile(out); string(got) != strings.SplitN(novemberCSV, "\n", 2)[0]+"\n" {
		t.Errorf("December CSV: %q, want the header alone", got)
	}
}

func TestExportParquet(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	out := filepath.Join(t.TempDir(), "nov.parquet")
	var progress bytes.Buffer
	if err := export(context.Background(), conn, db, exportConfig{Month: "2026-11", Format: "parquet", Out: out}, &progress); err != nil {
		t.Fatal(err)
	}
	// Read the file back through Arrow and render it as the CSV export does: the two must agree
	// to the last digit.
	rdr, err := file.OpenParquetFile(out, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	// Parquet adds field ids as metadata; names and types must be those written.
	for i, f := range showbackSchema().Fields() {
		if got := tbl.Schema().Field(i); got.Name != f.Name || !arrow.TypeEqual(got.Type, f.Type) {
			t.Errorf("column %d: %s %s, want %s %s", i, got.Name, got.Type, f.Name, f.Type)
		}
	}
	var b strings.Builder
	b.WriteString(strings.Join(exportColumns(), ",") + "\n")
	for row := 0; row < int(tbl.NumRows()); row++ {
		var cells []string
		for col := 0; col < int(tbl.NumCols()); col++ {
			chunk := tbl.Column(col).Data().Chunk(0)
			switch a := chunk.(type) {
			case *array.Date32:
				cells = append(cells, a.Value(row).ToTime().Format("2006-01-02"))
			case *array.String:
				cells = append(cells, a.Value(row))
			case *array.Uint64:
				cells = append(cells, decimal.NewFromUint64(a.Value(row)).String())
			case *array.Decimal128:
				typ := a.DataType().(*arrow.Decimal128Type)
				cells = append(cells, decimal.NewFromBigInt(a.Value(row).BigInt(), -typ.Scale).StringFixed(typ.Scale))
			default:
				t.Fatalf("column %d: unexpected array %T", col, chunk)
			}
		}
		b.WriteString(strings.Join(cells, ",") + "\n")
	}
	if b.String() != novemberCSV {
		t.Errorf("Parquet rows:\n%s\nwant:\n%s", b.String(), novemberCSV)
	}
}

func TestExportRejectsBadRequests(t *testing.T) {
	err := runExport(context.Background(), []string{"-month", "2026-13", "-format", "xml"}, &bytes.Buffer{})
	want := "-month \"2026-13\": want YYYY-MM\n-format \"xml\": want csv or parquet"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	err = runExport(context.Background(), []string{"-month", "2026-11", "-format", "parquet", "-o", "-"}, &bytes.Buffer{})
	if err == nil || err.Error() != "-o -: Parquet is written to a file, not to standard output" {
		t.Errorf("parquet to stdout: err = %v", err)
	}
}

func TestDecimal128Of(t *testing.T) {
	for in, want := range map[string]string{
		"0":              "0",
		"6.250000000001": "6250000000001",
		"-1.5":           "-1500000000000",
		"99999999999999999999999999.999999999999": "99999999999999999999999999999999999999",
	} {
		n, err := decimal128Of(decimal.RequireFromString(in))
		if err != nil || n.BigInt().String() != want {
			t.Errorf("decimal128Of(%s) = %s, %v; want %s", in, n.BigInt(), err, want)
		}
	}
	for in, want := range map[string]string{
		"0.0000000000001":                          "amount 0.0000000000001 has more than 12 decimals",
		"100000000000000000000000000.000000000000": "amount 100000000000000000000000000 exceeds decimal(38, 12)",
	} {
		if _, err := decimal128Of(decimal.RequireFromString(in)); err == nil || err.Error() != want {
			t.Errorf("decimal128Of(%s): err = %v, want %q", in, err, want)
		}
	}
}

func TestSpendCommand(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	var out bytes.Buffer
	if err := runSpend(context.Background(), []string{"-clickhouse", chtest.DSN(), "-database", db, "-day", "2026-11-20", "-top", "1"}, &out); err != nil {
		t.Fatal(err)
	}
	want := `SPEND  today 2026-11-20, month to date since 2026-11-01 (UTC days)

TODAY  $4.0000 over 3 events
     TEAM  events     cost  unpriced
  support       1  $2.2500         0
                        MODEL  events     cost  unpriced
  anthropic/claude-sonnet-4-5       1  $2.2500         0

MONTH TO DATE  $10.2500 over 9 events (1 unpriced)
     TEAM  events     cost  unpriced
  support       3  $6.2500         0
                        MODEL  events     cost  unpriced
  anthropic/claude-sonnet-4-5       3  $6.2500         0

TOP MOVERS  last 7 days against the 7 before
     TEAM      now   before     change       %
  support  $2.2500  $4.0000  ▼ $1.7500  -43.8%
          MODEL      now   before     change       %
  openai/gpt-4o  $3.0000  $1.0000  ▲ $2.0000  200.0%

UNPRICED MODELS  this month: events stored without a price; add the models to the pricing catalogue
  PROVIDER  MODEL       EVENTS  FIRST DAY   LAST DAY
  acme      acme-llm-7  1       2026-11-18  2026-11-18
`
	if out.String() != want {
		t.Errorf("spend:\n%s\nwant:\n%s", out.String(), want)
	}
	if err := runSpend(context.Background(), []string{"-day", "20-11-2026"}, &out); err == nil || err.Error() != `-day "20-11-2026": want YYYY-MM-DD` {
		t.Errorf("bad day: err = %v", err)
	}
}
