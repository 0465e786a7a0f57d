package alerting

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/alerter/budget"
	"github.com/tokenmeter/tokenmeter/alerter/detect"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// measureSQL is the expression of a measure over its source, as a string so that Decimal sums are
// read exactly whatever the server version prints.
func measureSQL(m rules.Measure) string {
	switch m {
	case rules.Cost:
		return "toString(sum(cost_usd))"
	case rules.UntaggedCost:
		// tag_coverage's test of a fully attributed row, negated (window.Value says the same).
		return "toString(sumIf(cost_usd, NOT (team != '' AND team != 'unallocated' AND feature != '' AND env != '' AND cost_center != '')))"
	case rules.TierFallbackEvents:
		return "toString(count())"
	case rules.Requests:
		return "toString(sum(events))"
	case rules.UnpricedEvents:
		return "toString(sum(unpriced_events))"
	}
	return "toString(sum(" + string(m) + "))"
}

// source is what a measure's history is read from: spend_1m, but for tier fallbacks, which
// spend_1m does not count, the flagged events of usage_events in the same shape (their
// minute and spend_1m's dimensions).
func source(db string, m rules.Measure, from, to time.Time) string {
	if m == rules.TierFallbackEvents {
		return fmt.Sprintf("(SELECT toStartOfMinute(time) AS minute, provider, model, model_priced, team, feature, env, cost_center, traffic "+
			"FROM %s.usage_events WHERE time >= toDateTime(%d) AND time < toDateTime(%d) AND tier_fallback = 1)", db, from.Unix(), to.Unix())
	}
	return db + ".spend_1m"
}

// parseAmount turns a ClickHouse sum into the measure's integer unit.
func parseAmount(s string, money bool) (int64, error) {
	d, err := decimal.NewFromString(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("read amount %q from ClickHouse: %w", s, err)
	}
	if money {
		d = d.Shift(12)
	}
	if !d.IsInteger() {
		return 0, fmt.Errorf("amount %q from ClickHouse is not a whole number of units", s)
	}
	return d.IntPart(), nil
}

// backfill loads the history each rule of rs needs from spend_1m, up to cutoff: hour buckets
// for baselines, minute buckets for the windows (from the start of the hour that the oldest
// minute bucket falls in, so the two never overlap). Rows after cutoff come from the stream.
func backfill(ctx context.Context, conn driver.Conn, db string, e *detect.Engine, rs []*rules.Rule, cutoff time.Time) error {
	for _, r := range rs {
		minSpan, hourSpan := detect.Span(r)
		minuteFrom := cutoff.Add(-minSpan).Truncate(time.Hour)
		if minSpan == 0 {
			minuteFrom = cutoff.Truncate(time.Hour)
		}
		hourFrom := cutoff.Add(-hourSpan).Truncate(time.Hour)
		measures := []rules.Measure{r.Measure}
		if r.ShareOf != "" && r.ShareOf != r.Measure {
			measures = append(measures, r.ShareOf)
		}
		// The rule's own history goes to its groups, which a nil dims would make totals: a rule
		// without group_by has one group, of no dimensions.
		groupBy := r.GroupBy
		if groupBy == nil {
			groupBy = []string{}
		}
		for _, m := range measures {
			own := m == r.Measure
			if own && hourSpan > 0 && hourFrom.Before(minuteFrom) {
				if err := load(ctx, conn, db, e, r, m, groupBy, true, hourFrom, minuteFrom); err != nil {
					return err
				}
			}
			if own {
				if err := load(ctx, conn, db, e, r, m, groupBy, false, minuteFrom, cutoff); err != nil {
					return err
				}
			}
			if !own || r.MinShareMilli > 0 {
				if err := load(ctx, conn, db, e, r, m, nil, false, minuteFrom, cutoff); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// load reads one rule's history of measure m between from and to, grouped by dims (nil for
// the rule's totals), per hour or per minute.
func load(ctx context.Context, conn driver.Conn, db string, e *detect.Engine, r *rules.Rule, m rules.Measure,
	dims []string, hourly bool, from, to time.Time) error {
	bucket := "minute"
	if hourly {
		// Arithmetic instead of toStartOfHour: hours of the Unix epoch, whatever the
		// server's time zone.
		bucket = "toDateTime(intDiv(toUInt32(minute), 3600) * 3600)"
	}
	cols := append([]string{bucket + " AS t"}, dims...)
	group := append([]string{"t"}, dims...)
	q := fmt.Sprintf("SELECT %s, %s AS v FROM %s WHERE minute >= toDateTime(%d) AND minute < toDateTime(%d) GROUP BY %s",
		strings.Join(cols, ", "), measureSQL(m), source(db, m, from, to), from.Unix(), to.Unix(), strings.Join(group, ", "))
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("load history of rule %s from ClickHouse: %w", r.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var t time.Time
		vals := make([]string, len(dims))
		dest := []any{&t}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		var v string
		dest = append(dest, &v)
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("read history of rule %s: %w", r.Name, err)
		}
		n, err := parseAmount(v, m.Money())
		if err != nil {
			return fmt.Errorf("history of rule %s: %w", r.Name, err)
		}
		if n == 0 {
			continue
		}
		h := detect.History{At: t, Hourly: hourly, Value: n, Measure: m}
		if dims != nil {
			h.Labels = map[string]string{}
			for i, d := range dims {
				h.Labels[d] = vals[i]
			}
		}
		e.AddHistory(r.Name, h)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read history of rule %s: %w", r.Name, err)
	}
	return nil
}

// backfillBudgets loads each budget's daily spend up to cutoff.
func backfillBudgets(ctx context.Context, conn driver.Conn, db string, t *budget.Tracker, bs []*rules.Budget, cutoff time.Time) error {
	from := cutoff.Add(-t.HistorySpan()).Truncate(24 * time.Hour)
	for _, b := range bs {
		q := fmt.Sprintf("SELECT toUInt32(intDiv(toUInt32(minute), 86400)) AS d, toString(sum(cost_usd)) FROM %s.spend_1m WHERE minute >= toDateTime(%d) AND minute < toDateTime(%d) AND %s = ? GROUP BY d",
			db, from.Unix(), cutoff.Unix(), b.ScopeKey)
		rows, err := conn.Query(ctx, q, b.ScopeValue)
		if err != nil {
			return fmt.Errorf("load spend of budget %s from ClickHouse: %w", b.Name, err)
		}
		for rows.Next() {
			var d uint32
			var v string
			if err := rows.Scan(&d, &v); err != nil {
				rows.Close()
				return fmt.Errorf("read spend of budget %s: %w", b.Name, err)
			}
			n, err := parseAmount(v, true)
			if err != nil {
				rows.Close()
				return fmt.Errorf("spend of budget %s: %w", b.Name, err)
			}
			t.AddHistory(b.Name, time.Unix(int64(d)*86400, 0), n)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("read spend of budget %s: %w", b.Name, err)
		}
	}
	return nil
}
