package aggregate

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shopspring/decimal"
	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
)

// The roll-ups spend_1m and spend_1d are filled by materialized views in the same INSERT as
// usage_events, but not atomically with it: ClickHouse writes the table's part and then each
// view's, so a crash (kill -9, OOM) or a lost answer can leave usage_events written and a
// roll-up not, or half. Since migration 0064 every roll-up row carries the stream partition
// whose writer wrote its events ('' for re-rating corrections and older rows), so the writer
// of a partition can compare the roll-ups with usage_events for its own partition alone, and
// add the difference as correction rows of its partition.
//
// That is exact because nothing else writes those rows while the writer repairs: the
// partition has one writer (the lease), which repairs only when no INSERT carrying the
// partition's rows runs in ClickHouse (awaitNoInserts, which also waits for repair INSERTs,
// named by chwrite.QueryID), and re-rating writes under partition ''. The difference is read
// from the tables as they are, so a repair that itself failed half-way is finished by the
// next one, and repairing twice adds nothing.
//
// A minute or day that holds roll-up rows from before migration 0064 (partition '', with a
// non-zero event count: re-rating's reverse and apply rows cancel out) cannot be compared per
// partition; it is left as it is and counted (tokenmeter_aggregator_rollup_repairs_total,
// table skipped_minutes or skipped_days).

// rollup is a roll-up table and how its time unit derives from usage_events.time.
type rollup struct {
	table, column string
	// of is the unit of usage_events.time, as the table's view computes it; in is that of
	// a Unix second given as %d.
	of, in  string
	skipped string // the repairs label of a unit left unrepaired
}

var rollups = [...]rollup{
	{table: "spend_1m", column: "minute", of: "toStartOfMinute(time)", in: "toStartOfMinute(toDateTime(%d))", skipped: "skipped_minutes"},
	{table: "spend_1d", column: "day", of: "toDate(time)", in: "toDate(toDateTime(%d))", skipped: "skipped_days"},
}

// groupColumns are the columns of a roll-up's key besides its time unit and partition.
const groupColumns = "provider, model, model_priced, team, feature, env, cost_center, traffic"

// counters are the UInt64 measures of a roll-up, in the order of rollupSum.counts.
const counters = "events, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, unpriced_events"

// rollupKey is one group of a roll-up within a partition.
type rollupKey struct {
	unit                                                                  int64 // Unix seconds of the minute or day
	provider, model, modelPriced, team, feature, env, costCenter, traffic string
}

// rollupSum is what a group sums: counters modulo 2^64, as ClickHouse adds them, and money.
type rollupSum struct {
	at            time.Time // the unit as ClickHouse returned it, to write it back unchanged
	counts        [8]uint64
	cost, savings decimal.Decimal
}

func (s *rollupSum) sub(o *rollupSum) {
	for i := range s.counts {
		s.counts[i] -= o.counts[i] // a negative difference wraps, and sum() wraps it back
	}
	s.cost = s.cost.Sub(o.cost)
	s.savings = s.savings.Sub(o.savings)
}

func (s *rollupSum) zero() bool {
	return s.counts == [8]uint64{} && s.cost.IsZero() && s.savings.IsZero()
}

// affected collects the minutes (Unix seconds) whose roll-ups a repair compares.
type affected map[int64]struct{}

func (a affected) add(t time.Time) { a[t.Unix()-t.Unix()%60] = struct{}{} }

// repairChunk bounds the minutes of one repair's queries, whose text ClickHouse caps at
// max_query_size.
const repairChunk = 1000

// repairRollups makes spend_1m and spend_1d of partition p agree with usage_events over the
// minutes in a (and the days they fall in), and unit_spend_1m and unit_spend_1d with its
// units, and usage_responses with its responses. The caller is p's writer and no INSERT of p
// runs. It returns the correction rows written per table of rollups, those of unitRollups, and
// the rows added to usage_responses.
func (s store) repairRollups(ctx context.Context, p int, a affected) (written [len(rollups)]int, skipped [len(rollups)]int, unitsWritten [len(unitRollups)]int, responses int, err error) {
	minutes := make([]int64, 0, len(a))
	for m := range a {
		minutes = append(minutes, m)
	}
	slices.Sort(minutes)
	for len(minutes) > 0 {
		chunk := minutes[:min(len(minutes), repairChunk)]
		minutes = minutes[len(chunk):]
		for i, r := range rollups {
			w, sk, err := s.repairRollup(ctx, p, r, chunk)
			written[i] += w
			skipped[i] += sk
			if err != nil {
				return written, skipped, unitsWritten, responses, err
			}
		}
		for i, r := range unitRollups {
			w, err := s.repairUnitRollup(ctx, p, r, chunk)
			unitsWritten[i] += w
			if err != nil {
				return written, skipped, unitsWritten, responses, err
			}
		}
		n, err := s.repairResponses(ctx, p, chunk)
		responses += n
		if err != nil {
			return written, skipped, unitsWritten, responses, err
		}
	}
	return written, skipped, unitsWritten, responses, nil
}

func (s store) repairRollup(ctx context.Context, p int, r rollup, minutes []int64) (written, skipped int, err error) {
	units := make([]string, len(minutes))
	for i, m := range minutes {
		units[i] = fmt.Sprintf(r.in, m)
	}
	set := "(" + strings.Join(units, ", ") + ")"
	// The scan of usage_events is bounded by time: its sorting key starts with the hour. Two
	// days either side cover a day's unit in any server time zone.
	from, to := minutes[0]-2*86400, minutes[len(minutes)-1]+2*86400

	legacy := map[int64]bool{}
	err = s.scanUnits(ctx, "SELECT "+r.column+" FROM "+s.db+"."+r.table+" WHERE partition = '' AND "+r.column+" IN "+set+
		" GROUP BY "+r.column+" HAVING sum(events) != 0", func(t time.Time) { legacy[t.Unix()] = true })
	if err != nil {
		return 0, 0, fmt.Errorf("find %s rows from before migration 0064 in %s.%s: %w", r.column, s.db, r.table, err)
	}
	want, err := s.rollupSums(ctx, "SELECT "+r.of+" AS unit, "+groupColumns+", count(), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), "+
		"sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(reasoning_tokens), sum(toUInt64(priced = 0)), toString(sum(cost_usd)), toString(sum(savings_usd)) "+
		"FROM "+s.db+".usage_events WHERE partition = ? AND time >= toDateTime(?) AND time < toDateTime(?) AND unit IN "+set+" GROUP BY unit, "+groupColumns,
		uint16(p), from, to)
	if err != nil {
		return 0, 0, fmt.Errorf("sum usage_events of partition %d by %s from %s: %w", p, r.column, s.db, err)
	}
	have, err := s.rollupSums(ctx, "SELECT "+r.column+", "+groupColumns+", sum(events), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), "+
		"sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(reasoning_tokens), sum(unpriced_events), toString(sum(cost_usd)), toString(sum(savings_usd)) "+
		"FROM "+s.db+"."+r.table+" WHERE partition = ? AND "+r.column+" IN "+set+" GROUP BY "+r.column+", "+groupColumns,
		strconv.Itoa(p))
	if err != nil {
		return 0, 0, fmt.Errorf("sum %s.%s of partition %d: %w", s.db, r.table, p, err)
	}

	var keys []rollupKey
	skip := map[int64]bool{}
	diff := func(k rollupKey, d rollupSum) {
		if d.zero() {
			return
		}
		if legacy[k.unit] {
			skip[k.unit] = true
			return
		}
		want[k] = d
		keys = append(keys, k)
	}
	for k, w := range want {
		if h, ok := have[k]; ok {
			w.sub(&h)
		}
		diff(k, w)
	}
	for k, h := range have {
		if _, ok := want[k]; ok {
			continue
		}
		d := rollupSum{at: h.at, cost: decimal.Zero, savings: decimal.Zero}
		d.sub(&h)
		diff(k, d)
	}
	if len(keys) == 0 {
		return 0, len(skip), nil
	}

	qctx := clickhouse.Context(ctx, clickhouse.WithQueryID(chwrite.QueryID(p, "repair")))
	b, err := s.conn.PrepareBatch(qctx, "INSERT INTO "+s.db+"."+r.table+" ("+r.column+", "+groupColumns+", partition, "+counters+", cost_usd, savings_usd)")
	if err != nil {
		return 0, len(skip), fmt.Errorf("insert %d correction rows of partition %d into %s.%s: %w", len(keys), p, s.db, r.table, err)
	}
	for _, k := range keys {
		d := want[k]
		c := d.counts
		if err := b.Append(d.at, k.provider, k.model, k.modelPriced, k.team, k.feature, k.env, k.costCenter, k.traffic, strconv.Itoa(p),
			c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], d.cost, d.savings); err != nil {
			_ = b.Abort()
			return 0, len(skip), fmt.Errorf("insert %d correction rows of partition %d into %s.%s: %w", len(keys), p, s.db, r.table, err)
		}
	}
	if err := b.Send(); err != nil {
		return 0, len(skip), fmt.Errorf("insert %d correction rows of partition %d into %s.%s: %w", len(keys), p, s.db, r.table, err)
	}
	return len(keys), len(skip), nil
}

// scanUnits calls fn with the single time column of each row of query.
func (s store) scanUnits(ctx context.Context, query string, fn func(time.Time)) error {
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	var t time.Time
	for rows.Next() {
		if err := rows.Scan(&t); err != nil {
			return err
		}
		fn(t)
	}
	return rows.Err()
}

// rollupSums reads the groups of query: a time unit, the groupColumns, the eight counters and
// the two sums of money as text.
func (s store) rollupSums(ctx context.Context, query string, args ...any) (map[rollupKey]rollupSum, error) {
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[rollupKey]rollupSum{}
	for rows.Next() {
		var (
			k             rollupKey
			v             rollupSum
			cost, savings string
		)
		c := &v.counts
		if err := rows.Scan(&v.at, &k.provider, &k.model, &k.modelPriced, &k.team, &k.feature, &k.env, &k.costCenter, &k.traffic,
			&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &cost, &savings); err != nil {
			return nil, err
		}
		if v.cost, err = decimal.NewFromString(cost); err != nil {
			return nil, fmt.Errorf("read sum of cost_usd %q: %w", cost, err)
		}
		if v.savings, err = decimal.NewFromString(savings); err != nil {
			return nil, fmt.Errorf("read sum of savings_usd %q: %w", savings, err)
		}
		k.unit = v.at.Unix()
		out[k] = v
	}
	return out, rows.Err()
}
