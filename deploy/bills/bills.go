// Package bills imports what the providers themselves report — OpenAI's Usage and Costs
// APIs, Anthropic's usage and cost reports, and CSV billing exports for the rest — into
// ClickHouse's provider_usage, so that tokenmeter's metering can be checked against the bill
// (the view billing_reconciliation).
//
// A report is fetched per period: one source and one UTC day. Store writes a period only when
// its content differs from the latest import of that period, under a new import version; the
// view provider_usage shows the latest import of each period. So running a sync again changes
// nothing, and a corrected report replaces the old one exactly, without DELETE (which
// ClickHouse 18.16 lacks).
package bills

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Token classes of Row.TokenClass. They are disjoint, so tokens of different classes add up.
const (
	InputUncached = "input_uncached" // input neither read from nor written to the prompt cache
	InputCached   = "input_cached"   // input read from the prompt cache
	CacheWrite5m  = "cache_write_5m" // input written to the cache with a five-minute lifetime
	CacheWrite1h  = "cache_write_1h" // input written to the cache with a one-hour lifetime
	Output        = "output"         // output, reasoning included
)

// Sources of the built-in importers (Row.Source, Period.Source).
const (
	SourceOpenAICompletions = "openai_completions"
	SourceOpenAIEmbeddings  = "openai_embeddings"
	SourceOpenAICosts       = "openai_costs"
	SourceAnthropicMessages = "anthropic_messages"
	SourceAnthropicCosts    = "anthropic_costs"
)

// Row is one line of a provider's report: tokens of one class, or a cost, for one day.
type Row struct {
	Day         time.Time // UTC midnight
	Source      string
	Provider    string
	Model       string
	Project     string // OpenAI project id, Anthropic workspace id
	APIKey      string // the provider's id of the key, never the key
	ServiceTier string
	TokenClass  string // one of the class constants, or "" for a cost not per class
	LineItem    string
	Tokens      uint64
	CostUSD     decimal.Decimal
}

// Period is one source's report of one UTC day.
type Period struct {
	Source string
	Day    time.Time // UTC midnight
	// Complete is false when the day had not ended when it was fetched: the next sync
	// replaces it.
	Complete bool
}

// Report is what one fetch returned: every period it covered (days without any row
// included: the provider reported nothing) and their rows.
type Report struct {
	Periods []Period
	Rows    []Row
}

// Add appends other's periods and rows to r.
func (r *Report) Add(other Report) {
	r.Periods = append(r.Periods, other.Periods...)
	r.Rows = append(r.Rows, other.Rows...)
}

// Range is a span of whole UTC days, From inclusive, To exclusive.
type Range struct {
	From, To time.Time
}

// Validate reports a range that is empty or not made of whole UTC days.
func (r Range) Validate() error {
	var errs []error
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"from", r.From}, {"to", r.To}} {
		if !t.t.Equal(day(t.t)) {
			errs = append(errs, fmt.Errorf("%s %s: not a UTC midnight", t.name, t.t.Format(time.RFC3339)))
		}
	}
	if !r.To.After(r.From) {
		errs = append(errs, fmt.Errorf("range %s .. %s is empty", r.From.Format(time.DateOnly), r.To.Format(time.DateOnly)))
	}
	return errors.Join(errs...)
}

// Days returns the UTC midnights of the range.
func (r Range) Days() []time.Time {
	var out []time.Time
	for d := day(r.From); d.Before(r.To); d = d.AddDate(0, 0, 1) {
		out = append(out, d)
	}
	return out
}

// day returns the UTC midnight of t's UTC day.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// periods returns one period of source per day of r, complete when the day had ended at now.
func periods(source string, r Range, now time.Time) []Period {
	var out []Period
	for _, d := range r.Days() {
		out = append(out, Period{Source: source, Day: d, Complete: !d.AddDate(0, 0, 1).After(now)})
	}
	return out
}

// usdScale is the number of decimals ClickHouse stores money with (Decimal(38, 12)).
const usdScale = 12

// parseUSD reads a decimal amount exactly ("0.06", "123.45", "1e-3") and rounds it to the
// picodollar.
func parseUSD(s string) (decimal.Decimal, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return decimal.Zero, nil
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Zero, fmt.Errorf("amount %q: not a decimal number", s)
	}
	return d.Round(usdScale), nil
}

// sortRows orders rows by every field, so that equal reports hash equally whatever order the
// provider answered in.
func sortRows(rows []Row) {
	sort.Slice(rows, func(i, j int) bool { return rowKey(rows[i]) < rowKey(rows[j]) })
}

// rowKey prints a row in one line, every field, as the content hash reads it.
func rowKey(r Row) string {
	return strings.Join([]string{
		r.Day.Format(time.DateOnly), r.Source, r.Provider, r.Model, r.Project, r.APIKey, r.ServiceTier,
		r.TokenClass, r.LineItem, fmt.Sprint(r.Tokens), r.CostUSD.StringFixed(usdScale),
	}, "\x00")
}
