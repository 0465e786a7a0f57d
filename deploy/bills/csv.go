package bills

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// CSV columns. The first line names the columns, in any order; CSVRequired must all be
// there, CSVOptional may be, and any other column is refused (a typo would otherwise drop
// data silently).
var (
	CSVRequired = []string{"day", "provider", "model", "token_class", "tokens", "cost_usd"}
	CSVOptional = []string{"project", "api_key", "service_tier", "line_item"}
)

// tokenClasses are the values a CSV's token_class may hold.
var tokenClasses = map[string]bool{"": true, InputUncached: true, InputCached: true, CacheWrite5m: true, CacheWrite1h: true, Output: true}

// ParseCSV reads a billing export in tokenmeter's CSV format (see CSVRequired and
// CSVOptional) as rows of source. Every day the file holds becomes a complete period of
// source: importing the file replaces exactly those days of that source.
func ParseCSV(r io.Reader, source string) (Report, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 0
	header, err := cr.Read()
	if err == io.EOF {
		return Report{}, errors.New("csv: empty file, want a header line")
	}
	if err != nil {
		return Report{}, fmt.Errorf("csv: %w", err)
	}
	col := map[string]int{}
	known := map[string]bool{}
	for _, c := range append(append([]string{}, CSVRequired...), CSVOptional...) {
		known[c] = true
	}
	var errs []error
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if !known[h] {
			errs = append(errs, fmt.Errorf("csv: column %q unknown (want %s, optionally %s)", h, strings.Join(CSVRequired, ", "), strings.Join(CSVOptional, ", ")))
			continue
		}
		if _, dup := col[h]; dup {
			errs = append(errs, fmt.Errorf("csv: column %q twice", h))
		}
		col[h] = i
	}
	for _, c := range CSVRequired {
		if _, ok := col[c]; !ok {
			errs = append(errs, fmt.Errorf("csv: no column %q", c))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Report{}, err
	}
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var rep Report
	days := map[time.Time]bool{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Report{}, fmt.Errorf("csv: %w", err)
		}
		d, err := time.Parse(time.DateOnly, field(rec, "day"))
		if err != nil {
			return Report{}, fmt.Errorf("csv line %d: day %q: want YYYY-MM-DD", line, field(rec, "day"))
		}
		row := Row{
			Day: d, Source: source, Provider: strings.ToLower(field(rec, "provider")), Model: field(rec, "model"),
			Project: field(rec, "project"), APIKey: field(rec, "api_key"), ServiceTier: field(rec, "service_tier"),
			TokenClass: field(rec, "token_class"), LineItem: field(rec, "line_item"),
		}
		if row.Provider == "" {
			return Report{}, fmt.Errorf("csv line %d: provider is empty", line)
		}
		if !tokenClasses[row.TokenClass] {
			return Report{}, fmt.Errorf("csv line %d: token_class %q: want one of %s, %s, %s, %s, %s or empty", line, row.TokenClass, InputUncached, InputCached, CacheWrite5m, CacheWrite1h, Output)
		}
		if s := field(rec, "tokens"); s != "" {
			if row.Tokens, err = strconv.ParseUint(s, 10, 64); err != nil {
				return Report{}, fmt.Errorf("csv line %d: tokens %q: want a whole number", line, s)
			}
		}
		if row.CostUSD, err = parseUSD(field(rec, "cost_usd")); err != nil {
			return Report{}, fmt.Errorf("csv line %d: cost_usd: %w", line, err)
		}
		if !days[d] {
			days[d] = true
			rep.Periods = append(rep.Periods, Period{Source: source, Day: d, Complete: true})
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}
