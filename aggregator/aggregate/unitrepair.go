package aggregate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shopspring/decimal"
	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
)

// unitRollups are the roll-ups of event units (migrations 0092–0097), filled by their own views
// in the same INSERT as usage_events and repaired by difference like spend_1m and spend_1d. They
// were created after migration 0064, so every row of theirs carries its partition: none is
// skipped.
var unitRollups = [...]rollup{
	{table: "unit_spend_1m", column: "minute", of: "toStartOfMinute(time)", in: "toStartOfMinute(toDateTime(%d))"},
	{table: "unit_spend_1d", column: "day", of: "toDate(time)", in: "toDate(toDateTime(%d))"},
}

// unitKey is one group of a unit roll-up within a partition.
type unitKey struct {
	rollupKey
	unit string
}

// unitSum is what a group of a unit roll-up sums.
type unitSum struct {
	at            time.Time
	events, units int64
	cost          decimal.Decimal
}

// repairUnitRollup makes unit roll-up r of partition p agree with the units of usage_events
// over minutes (see repairRollup), and returns the correction rows it wrote.
func (s store) repairUnitRollup(ctx context.Context, p int, r rollup, minutes []int64) (int, error) {
	units := make([]string, len(minutes))
	for i, m := range minutes {
		units[i] = fmt.Sprintf(r.in, m)
	}
	set := "(" + strings.Join(units, ", ") + ")"
	from, to := minutes[0]-2*86400, minutes[len(minutes)-1]+2*86400
	want, err := s.unitSums(ctx, "SELECT "+r.of+" AS at, "+groupColumns+", unit_key, toInt64(count()), toInt64(sum(unit_count)), toString(sum(unit_cost)) "+
		"FROM "+s.db+".usage_events ARRAY JOIN unit_keys AS unit_key, unit_counts AS unit_count, unit_costs_usd AS unit_cost "+
		"WHERE partition = ? AND time >= toDateTime(?) AND time < toDateTime(?) AND at IN "+set+" GROUP BY at, "+groupColumns+", unit_key",
		uint16(p), from, to)
	if err != nil {
		return 0, fmt.Errorf("sum the units of usage_events of partition %d by %s from %s: %w", p, r.column, s.db, err)
	}
	have, err := s.unitSums(ctx, "SELECT "+r.column+", "+groupColumns+", unit, sum(events), sum(units), toString(sum(cost_usd)) "+
		"FROM "+s.db+"."+r.table+" WHERE partition = ? AND "+r.column+" IN "+set+" GROUP BY "+r.column+", "+groupColumns+", unit",
		strconv.Itoa(p))
	if err != nil {
		return 0, fmt.Errorf("sum %s.%s of partition %d: %w", s.db, r.table, p, err)
	}
	var keys []unitKey
	for k, h := range have {
		w := want[k]
		if w.at.IsZero() {
			w.at, w.cost = h.at, decimal.Zero
		}
		w.events, w.units, w.cost = w.events-h.events, w.units-h.units, w.cost.Sub(h.cost)
		want[k] = w
	}
	for k, d := range want {
		if d.events != 0 || d.units != 0 || !d.cost.IsZero() {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithQueryID(chwrite.QueryID(p, "repair")))
	b, err := s.conn.PrepareBatch(qctx, "INSERT INTO "+s.db+"."+r.table+" ("+r.column+", "+groupColumns+", partition, unit, events, units, cost_usd)")
	if err != nil {
		return 0, fmt.Errorf("insert %d correction rows of partition %d into %s.%s: %w", len(keys), p, s.db, r.table, err)
	}
	for _, k := range keys {
		d := want[k]
		if err := b.Append(d.at, k.provider, k.model, k.modelPriced, k.team, k.feature, k.env, k.costCenter, k.traffic, strconv.Itoa(p),
			k.unit, d.events, d.units, d.cost); err != nil {
			_ = b.Abort()
			return 0, fmt.Errorf("insert %d correction rows of partition %d into %s.%s: %w", len(keys), p, s.db, r.table, err)
		}
	}
	if err := b.Send(); err != nil {
		return 0, fmt.Errorf("insert %d correction rows of partition %d into %s.%s: %w", len(keys), p, s.db, r.table, err)
	}
	return len(keys), nil
}

// unitSums reads the groups of query: a time unit, the groupColumns, the unit key, events,
// units and the sum of money as text.
func (s store) unitSums(ctx context.Context, query string, args ...any) (map[unitKey]unitSum, error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[unitKey]unitSum{}
	for rows.Next() {
		var (
			k    unitKey
			v    unitSum
			cost string
		)
		if err := rows.Scan(&v.at, &k.provider, &k.model, &k.modelPriced, &k.team, &k.feature, &k.env, &k.costCenter, &k.traffic,
			&k.unit, &v.events, &v.units, &cost); err != nil {
			return nil, err
		}
		if v.cost, err = decimal.NewFromString(cost); err != nil {
			return nil, fmt.Errorf("read sum of cost_usd %q: %w", cost, err)
		}
		k.rollupKey.unit = v.at.Unix()
		out[k] = v
	}
	return out, rows.Err()
}
