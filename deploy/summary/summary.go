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
	Key      string          `json:"key"`
	Events   uint64          `json:"events"`
	Cost     decimal.Decimal `json:"cost_usd"`
	Unpriced uint64          `json:"unpriced_events"`
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

// PrintSpend writes the "tokenmeter spend" report: aligned tables under one heading each.
func PrintSpend(w io.Writer, s Spend) {
	heading := func(title string, total Line) {
		fmt.Fprintf(w, "\n%s  %s over %d events", title, Money(total.Cost), total.Events)
		if total.Unpriced > 0 {
			fmt.Fprintf(w, " (%d unpriced)", total.Unpriced)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "SPEND  today %s, month to date since %s (UTC days)\n", s.Today.To.Format(time.DateOnly), s.MonthToDate.From.Format(time.DateOnly))
	heading("TODAY", s.TodayTotal)
	table(w, "team", s.TodayByTeam)
	table(w, "model", s.TodayByModel)
	heading("MONTH TO DATE", s.MonthTotal)
	table(w, "team", s.MonthByTeam)
	table(w, "model", s.MonthByModel)
	fmt.Fprintf(w, "\nTOP MOVERS  last %d days against the %d before\n", s.MoverDays, s.MoverDays)
	movers(w, "team", s.TeamMovers)
	movers(w, "model", s.ModelMovers)
	fmt.Fprintf(w, "\nUNPRICED MODELS  this month: events stored without a price; add the models to the pricing catalogue\n")
	if len(s.UnpricedMonth) == 0 {
		fmt.Fprintln(w, "  none: every event was priced")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  PROVIDER\tMODEL\tEVENTS\tFIRST DAY\tLAST DAY\n")
	for _, m := range s.UnpricedMonth {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", m.Provider, m.Model, m.Events, m.FirstSeen, m.LastSeen)
	}
	_ = tw.Flush()
}

func movers(w io.Writer, title string, ms []Mover) {
	if len(ms) == 0 {
		fmt.Fprintf(w, "  no %s changed\n", title)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tnow\tbefore\tchange\t%%\t\n", strings.ToUpper(title))
	for _, m := range ms {
		arrow, pct := "▲", m.ChangePct+"%"
		if m.Delta.IsNegative() {
			arrow = "▼"
		}
		if m.ChangePct == "" {
			pct = "new"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t\n", m.Key, Money(m.Current), Money(m.Previous), arrow, Money(m.Delta.Abs()), pct)
	}
	_ = tw.Flush()
}
