// Package summary prints a terminal spend summary read from ClickHouse's roll-ups.
package summary

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// Line is one row of a breakdown.
type Line struct {
	Key      string
	Events   uint64
	Cost     decimal.Decimal
	Unpriced uint64
}

// Report is what the summary shows.
type Report struct {
	Since   time.Time
	Total   Line
	ByTeam  []Line
	ByModel []Line
}

// Query reads the spend since a time from db.spend_1m, top limit lines per breakdown.
func Query(ctx context.Context, conn driver.Conn, db string, since time.Time, limit int) (Report, error) {
	r := Report{Since: since}
	total, err := breakdown(ctx, conn, db, "'total'", since, 1)
	if err != nil {
		return r, err
	}
	if len(total) == 1 {
		r.Total = total[0]
	}
	if r.ByTeam, err = breakdown(ctx, conn, db, "if(team = '', '(untagged)', team)", since, limit); err != nil {
		return r, err
	}
	if r.ByModel, err = breakdown(ctx, conn, db, "concat(provider, '/', if(model_priced = '', model, model_priced))", since, limit); err != nil {
		return r, err
	}
	return r, nil
}

func breakdown(ctx context.Context, conn driver.Conn, db, key string, since time.Time, limit int) ([]Line, error) {
	q := fmt.Sprintf(`SELECT %s AS k, sum(events) AS e, toString(sum(cost_usd)) AS c, sum(unpriced_events) AS u
		FROM %s.spend_1m WHERE minute >= toDateTime(?) GROUP BY k ORDER BY sum(cost_usd) DESC, k LIMIT %d`, key, db, limit)
	rows, err := conn.Query(ctx, q, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("query spend by %s: %w", key, err)
	}
	defer rows.Close()
	var out []Line
	for rows.Next() {
		var l Line
		var cost string
		if err := rows.Scan(&l.Key, &l.Events, &cost, &l.Unpriced); err != nil {
			return nil, fmt.Errorf("read spend by %s: %w", key, err)
		}
		if l.Cost, err = decimal.NewFromString(cost); err != nil {
			return nil, fmt.Errorf("read spend by %s: cost %q: %w", key, cost, err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Print writes the report as aligned tables.
func Print(w io.Writer, r Report) {
	fmt.Fprintf(w, "spend since %s: %s over %d events (%d unpriced)\n",
		r.Since.UTC().Format("2006-01-02 15:04 MST"), Money(r.Total.Cost), r.Total.Events, r.Total.Unpriced)
	table(w, "team", r.ByTeam)
	table(w, "model", r.ByModel)
}

func table(w io.Writer, title string, lines []Line) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tevents\tcost\tunpriced\t\n", strings.ToUpper(title))
	for _, l := range lines {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t\n", l.Key, l.Events, Money(l.Cost), l.Unpriced)
	}
	_ = tw.Flush()
}

// Money formats an exact USD amount for people: dollars with thousands separators and four
// decimals (the exact value stays in ClickHouse).
func Money(d decimal.Decimal) string {
	s := d.StringFixed(4)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := "$" + b.String() + "." + frac
	if neg {
		out = "-" + out
	}
	return out
}
