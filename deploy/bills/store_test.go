package bills

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func migrated(t *testing.T) (driver.Conn, string) {
	t.Helper()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(context.Background(), conn, db); err != nil {
		t.Fatal(err)
	}
	return conn, db
}

// tsv runs SELECT cols FROM rest, cols being String expressions, and returns its rows as
// tab-separated lines.
func tsv(t *testing.T, conn driver.Conn, cols, rest string) string {
	t.Helper()
	q := "SELECT arrayStringConcat([" + cols + "], '\t') FROM " + rest
	rs, err := conn.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rs.Close()
	var b strings.Builder
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + "\n")
	}
	return b.String()
}

func usd(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// TestStoreReplacesExactly: storing a report twice writes nothing the second time; a
// corrected report replaces its periods exactly — a row gone is gone, a day now empty shows
// nothing — and leaves the other periods as they were.
func TestStoreReplacesExactly(t *testing.T) {
	conn, db := migrated(t)
	ctx := context.Background()
	row := func(d time.Time, source, model, class string, tokens uint64, cost string) Row {
		return Row{Day: d, Source: source, Provider: "openai", Model: model, TokenClass: class, Tokens: tokens, CostUSD: usd(cost)}
	}
	first := Report{
		Periods: []Period{{"openai_completions", nov29, true}, {"openai_completions", nov30, false}, {"openai_costs", nov29, true}},
		Rows: []Row{
			row(nov29, "openai_completions", "gpt-4o", InputUncached, 100, "0"),
			row(nov29, "openai_completions", "gpt-4o-mini", Output, 7, "0"),
			row(nov30, "openai_completions", "gpt-4o", InputUncached, 5, "0"),
			row(nov29, "openai_costs", "gpt-4o", "", 0, "1.000000000001"),
		},
	}
	cols := "toString(day), source, model, token_class, toString(tokens), toString(cost_usd), import_id, toString(complete)"
	from := db + ".provider_usage ORDER BY day, source, model, token_class"
	run1 := NewRun(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	res, err := Store(ctx, conn, db, first, run1)
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Periods: 3, Written: 3, Rows: 4}) {
		t.Errorf("first store: %+v", res)
	}
	want := `2026-11-29	openai_completions	gpt-4o	input_uncached	100	0.000000000000	bills-20261130T120000.000000000Z	1
2026-11-29	openai_completions	gpt-4o-mini	output	7	0.000000000000	bills-20261130T120000.000000000Z	1
2026-11-29	openai_costs	gpt-4o		0	1.000000000001	bills-20261130T120000.000000000Z	1
2026-11-30	openai_completions	gpt-4o	input_uncached	5	0.000000000000	bills-20261130T120000.000000000Z	0
`
	if got := tsv(t, conn, cols, from); got != want {
		t.Errorf("after the first import:\n%s\nwant:\n%s", got, want)
	}

	// The same report again, rows in another order: nothing written.
	again := first
	again.Rows = []Row{first.Rows[3], first.Rows[2], first.Rows[1], first.Rows[0]}
	res, err = Store(ctx, conn, db, again, NewRun(time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Periods: 3, Unchanged: 3}) {
		t.Errorf("same report again: %+v, want nothing written", res)
	}
	if got := tsv(t, conn, cols, from); got != want {
		t.Errorf("after the same report again:\n%s\nwant:\n%s", got, want)
	}

	// A correction: Nov 29 of completions loses gpt-4o-mini and changes gpt-4o; Nov 30 is now
	// complete and empty; costs are not in this report and stay.
	fix := Report{
		Periods: []Period{{"openai_completions", nov29, true}, {"openai_completions", nov30, true}},
		Rows:    []Row{row(nov29, "openai_completions", "gpt-4o", InputUncached, 90, "0")},
	}
	res, err = Store(ctx, conn, db, fix, NewRun(time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	if res != (Result{Periods: 2, Written: 2, Rows: 1}) {
		t.Errorf("correction: %+v", res)
	}
	want = `2026-11-29	openai_completions	gpt-4o	input_uncached	90	0.000000000000	bills-20261201T060000.000000000Z	1
2026-11-29	openai_costs	gpt-4o		0	1.000000000001	bills-20261130T120000.000000000Z	1
`
	if got := tsv(t, conn, cols, from); got != want {
		t.Errorf("after the correction:\n%s\nwant:\n%s", got, want)
	}
	if got := tsv(t, conn, "toString(count())", db+".provider_usage_imports"); got != "5\n" {
		t.Errorf("import records = %s, want 5 (3 + 0 + 2)", got)
	}

	if _, err := Store(ctx, conn, db, Report{Periods: fix.Periods[:1], Rows: fix.Rows[:0:0]}, run1); err != nil {
		t.Fatal(err)
	}
	bad := Report{Periods: fix.Periods[:1], Rows: []Row{row(nov30, "openai_completions", "x", Output, 1, "0")}}
	if _, err := Store(ctx, conn, db, bad, run1); err == nil || err.Error() != "a row of openai_completions 2026-11-30 lies outside the periods of the report" {
		t.Errorf("row outside the periods: error = %v", err)
	}
}
