package summary

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// MeteredLine is how much of one key's metered calls was measured: the calls whose usage the
// proxy had to estimate (usage_events.estimated: cut off, abandoned, timed out, without usage)
// beside all of them.
type MeteredLine struct {
	Key            string          `json:"key"`
	Events         uint64          `json:"events"`
	EstimatedCalls uint64          `json:"estimated_events"`
	Cost           decimal.Decimal `json:"cost_usd"`
	EstimatedCost  decimal.Decimal `json:"estimated_usd"`
	// SharePct is the measured events in percent of the events, one decimal ("" when none).
	SharePct string `json:"metered_share_pct"`
}

// MeteredShare sums, over a range, the events and the estimated events by a dimension of
// Dimensions, the keys with most estimated cost first, then most cost, at most limit lines.
// It reads usage_events (the roll-ups do not count estimated events), leaving out reports
// displaced by a better report of the same call, like the view metered_share.
func MeteredShare(ctx context.Context, conn driver.Conn, db, by string, r Range, f Filter, limit int) ([]MeteredLine, error) {
	key, err := dimension(by)
	if err != nil {
		return nil, err
	}
	cond, fargs, err := f.where()
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf(`SELECT %s AS k, count(), sum(estimated), toString(sum(cost_usd)), toString(sumIf(cost_usd, estimated = 1))
		FROM %[2]s.usage_events
		WHERE time >= toDateTime(toDate(?)) AND time < toDateTime(toDate(?) + 1)%[3]s
			AND event_id NOT IN (SELECT event_id FROM %[2]s.cost_corrections WHERE kind = 'displaced')
		GROUP BY k ORDER BY sumIf(cost_usd, estimated = 1) DESC, sum(cost_usd) DESC, k LIMIT %[4]d`, key, db, cond, max(limit, 1))
	rows, err := conn.Query(ctx, q, append(r.args(), fargs...)...)
	if err != nil {
		return nil, fmt.Errorf("query metered share by %s: %w", by, err)
	}
	defer rows.Close()
	out := []MeteredLine{}
	for rows.Next() {
		var l MeteredLine
		var cost, estimated string
		if err := rows.Scan(&l.Key, &l.Events, &l.EstimatedCalls, &cost, &estimated); err != nil {
			return nil, fmt.Errorf("read metered share by %s: %w", by, err)
		}
		if l.Cost, err = decimal.NewFromString(cost); err != nil {
			return nil, fmt.Errorf("read metered share by %s: cost %q: %w", by, cost, err)
		}
		if l.EstimatedCost, err = decimal.NewFromString(estimated); err != nil {
			return nil, fmt.Errorf("read metered share by %s: cost %q: %w", by, estimated, err)
		}
		l.SharePct = Percent(decimal.NewFromUint64(l.Events-l.EstimatedCalls), decimal.NewFromUint64(l.Events))
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read metered share by %s: %w", by, err)
	}
	return out, nil
}
