package bills

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// Fetcher fetches a provider's reports of a range of days (OpenAI, Anthropic).
type Fetcher interface {
	Fetch(ctx context.Context, r Range) (Report, error)
}

// Sync fetches r from every fetcher and stores each report (see Store). Days after now's day
// are not fetched; now's own day is fetched as a partial period. A fetcher that fails stops
// the sync; what earlier fetchers stored stays, and running the sync again completes it.
func Sync(ctx context.Context, conn driver.Conn, db string, fetchers []Fetcher, r Range, now time.Time) (Result, error) {
	if end := day(now).AddDate(0, 0, 1); r.To.After(end) {
		r.To = end
	}
	if err := r.Validate(); err != nil {
		return Result{}, err
	}
	run := NewRun(now)
	var total Result
	for _, f := range fetchers {
		rep, err := f.Fetch(ctx, r)
		if err != nil {
			return total, err
		}
		res, err := Store(ctx, conn, db, rep, run)
		total.Periods += res.Periods
		total.Written += res.Written
		total.Unchanged += res.Unchanged
		total.Rows += res.Rows
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// DiffLine is billing_reconciliation summed over a range of days for one provider and model
// (and one day when the diff is daily).
type DiffLine struct {
	Day             string // YYYY-MM-DD, or "" for the whole range
	Provider, Model string
	MeteredEvents   uint64
	UnpricedEvents  uint64
	// EstimatedEvents are the metered events whose tokens the proxy estimated: calls billed
	// (or maybe billed) whose answer carried no usage (billing_reconciliation).
	EstimatedEvents uint64
	MeteredTokens   uint64
	BilledTokens    uint64
	MeteredCostUSD  decimal.Decimal
	BilledCostUSD   decimal.Decimal
	Partial         bool // some billed day had not ended when imported
}

// DifferenceUSD is billed - metered.
func (l DiffLine) DifferenceUSD() decimal.Decimal { return l.BilledCostUSD.Sub(l.MeteredCostUSD) }

// Share is DifferenceUSD / BilledCostUSD in percent, to two decimals, or "-" when nothing was
// billed.
func (l DiffLine) Share() string {
	if l.BilledCostUSD.IsZero() {
		return "-"
	}
	return l.DifferenceUSD().Mul(decimal.NewFromInt(100)).DivRound(l.BilledCostUSD, 2).StringFixed(2) + "%"
}

// Diff returns billing_reconciliation over r per provider and model, or per day, provider and
// model when daily, ordered by day, provider and model.
func Diff(ctx context.Context, conn driver.Conn, db string, r Range, daily bool) ([]DiffLine, error) {
	dayCol := "''"
	if daily {
		dayCol = "toString(day)"
	}
	tokens := func(side string) string {
		var cols []string
		for _, c := range []string{"input_uncached", "input_cached", "cache_write_5m", "cache_write_1h", "output"} {
			cols = append(cols, "sum("+side+"_"+c+"_tokens)")
		}
		return strings.Join(cols, " + ")
	}
	q := "SELECT " + dayCol + " AS d, provider, model, sum(metered_events), sum(metered_unpriced_events), sum(metered_estimated_events), " +
		tokens("metered") + ", " + tokens("billed") + ", toString(sum(metered_cost_usd)), toString(sum(billed_cost_usd)), min(billed_complete) " +
		"FROM " + db + ".billing_reconciliation WHERE day >= toDate(?) AND day < toDate(?) " +
		"GROUP BY d, provider, model ORDER BY d, provider, model"
	rs, err := conn.Query(ctx, q, r.From.Format(time.DateOnly), r.To.Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("read %s.billing_reconciliation for %s .. %s: %w", db, r.From.Format(time.DateOnly), r.To.Format(time.DateOnly), err)
	}
	defer rs.Close()
	var out []DiffLine
	for rs.Next() {
		var l DiffLine
		var metered, billed string
		var complete uint8
		if err := rs.Scan(&l.Day, &l.Provider, &l.Model, &l.MeteredEvents, &l.UnpricedEvents, &l.EstimatedEvents, &l.MeteredTokens, &l.BilledTokens, &metered, &billed, &complete); err != nil {
			return nil, fmt.Errorf("read %s.billing_reconciliation: %w", db, err)
		}
		if l.MeteredCostUSD, err = decimal.NewFromString(metered); err != nil {
			return nil, fmt.Errorf("read %s.billing_reconciliation: metered cost %q: %w", db, metered, err)
		}
		if l.BilledCostUSD, err = decimal.NewFromString(billed); err != nil {
			return nil, fmt.Errorf("read %s.billing_reconciliation: billed cost %q: %w", db, billed, err)
		}
		l.Partial = complete == 0
		out = append(out, l)
	}
	return out, rs.Err()
}
