// Package chwrite writes usage rows to ClickHouse's usage_events table in one columnar INSERT,
// and reads back which event ids a partition already holds there.
package chwrite

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// columns is the explicit column list of the INSERT; ClickHouse 18.x needs it, and it keeps
// the writer working when later migrations add columns.
const columns = "event_id, time, time_ms, ingested_at, partition, provider, model, model_priced, operation, " +
	"team, feature, env, cost_center, traffic, tag_keys, tag_values, workflow_id, prompt_version, response_id, " +
	"input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, " +
	"cost_usd, savings_usd, priced, price_version, service_tier, status, latency_ms, cache_hit"

// Writer inserts rows into <db>.usage_events. It reuses its column buffers between inserts, so
// it is not safe for concurrent use: give each partition worker its own.
type Writer struct {
	conn   driver.Conn
	db     string
	insert string
	cols   cols
}

// cols holds one slice per column, in the order of the columns constant.
type cols struct {
	ids                                                       []string
	times, ingested                                           []int64
	timeMS, partition                                         []uint16
	provider, model, modelPriced, operation                   []string
	team, feature, env, costCenter, traffic                   []string
	workflowID, promptVersion, responseID                     []string
	input, output, cachedInput, cacheWrite, cacheWrite1h, rsn []uint64
	cost, savings                                             []decimal.Decimal
	priced, cacheHit                                          []uint8
	priceVersion, serviceTier, status                         []string
	latency                                                   []uint32
}

// New returns a writer to database db, whose name must be a valid identifier.
func New(conn driver.Conn, db string) *Writer {
	return &Writer{conn: conn, db: db, insert: "INSERT INTO " + db + ".usage_events (" + columns + ")"}
}

// Insert writes rows as one INSERT, with partition as their stream partition. The
// materialized views fill spend_1m and spend_1d from the same INSERT.
//
// An error does not mean nothing was written: ClickHouse writes one part per monthly
// partition, so rows spanning two months can land half. The caller must find out which ids
// landed (Existing) before trying again.
func (w *Writer) Insert(ctx context.Context, partition int, rows []batch.Row) error {
	return w.insertParts(ctx, []part{{partition, rows}})
}

// part is rows of one stream partition.
type part struct {
	partition int
	rows      []batch.Row
}

// insertParts writes the rows of every part as one INSERT.
func (w *Writer) insertParts(ctx context.Context, parts []part) error {
	n := 0
	for _, p := range parts {
		n += len(p.rows)
	}
	if n == 0 {
		return nil
	}
	w.reset()
	for _, p := range parts {
		w.fill(p.partition, p.rows)
	}
	b, err := w.conn.PrepareBatch(ctx, w.insert)
	if err != nil {
		return fmt.Errorf("prepare insert of %d rows into %s.usage_events: %w", n, w.db, err)
	}
	if err := w.append(b, parts); err != nil {
		_ = b.Abort()
		return fmt.Errorf("append %d rows for %s.usage_events: %w", n, w.db, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s.usage_events: %w", n, w.db, err)
	}
	return nil
}

// reset empties the column buffers, keeping their arrays.
func (w *Writer) reset() {
	c := &w.cols
	*c = cols{
		ids: c.ids[:0], times: c.times[:0], ingested: c.ingested[:0], timeMS: c.timeMS[:0], partition: c.partition[:0],
		provider: c.provider[:0], model: c.model[:0], modelPriced: c.modelPriced[:0], operation: c.operation[:0],
		team: c.team[:0], feature: c.feature[:0], env: c.env[:0], costCenter: c.costCenter[:0], traffic: c.traffic[:0],
		workflowID: c.workflowID[:0], promptVersion: c.promptVersion[:0], responseID: c.responseID[:0],
		input: c.input[:0], output: c.output[:0], cachedInput: c.cachedInput[:0], cacheWrite: c.cacheWrite[:0],
		cacheWrite1h: c.cacheWrite1h[:0], rsn: c.rsn[:0], cost: c.cost[:0], savings: c.savings[:0],
		priced: c.priced[:0], cacheHit: c.cacheHit[:0], priceVersion: c.priceVersion[:0],
		serviceTier: c.serviceTier[:0], status: c.status[:0], latency: c.latency[:0],
	}
}

// fill appends rows, of stream partition partition, to the column buffers.
func (w *Writer) fill(partition int, rows []batch.Row) {
	c := &w.cols
	for i := range rows {
		r := &rows[i]
		ms := r.Time.UnixMilli()
		c.ids = append(c.ids, r.ID)
		c.times = append(c.times, floorDiv(ms, 1000))
		c.timeMS = append(c.timeMS, uint16(ms-floorDiv(ms, 1000)*1000))
		c.ingested = append(c.ingested, r.Received.Unix())
		c.partition = append(c.partition, uint16(partition))
		c.provider = append(c.provider, r.Provider)
		c.model = append(c.model, r.Model)
		c.modelPriced = append(c.modelPriced, r.ModelPriced)
		c.operation = append(c.operation, r.Operation)
		c.team = append(c.team, r.Team)
		c.feature = append(c.feature, r.Feature)
		c.env = append(c.env, r.Env)
		c.costCenter = append(c.costCenter, r.CostCenter)
		c.traffic = append(c.traffic, r.Traffic)
		c.workflowID = append(c.workflowID, r.WorkflowID)
		c.promptVersion = append(c.promptVersion, r.PromptVersion)
		c.responseID = append(c.responseID, r.ResponseID)
		c.input = append(c.input, unsigned(r.Tokens.Input))
		c.output = append(c.output, unsigned(r.Tokens.Output))
		c.cachedInput = append(c.cachedInput, unsigned(r.Tokens.CachedInput))
		c.cacheWrite = append(c.cacheWrite, unsigned(r.Tokens.CacheWrite))
		c.cacheWrite1h = append(c.cacheWrite1h, unsigned(r.Tokens.CacheWrite1h))
		c.rsn = append(c.rsn, unsigned(r.Tokens.Reasoning))
		c.cost = append(c.cost, decimal.New(r.CostPico, -12))
		c.savings = append(c.savings, decimal.New(r.SavingsPico, -12))
		c.priced = append(c.priced, flag(r.Priced))
		c.priceVersion = append(c.priceVersion, r.PriceVersion)
		c.serviceTier = append(c.serviceTier, r.ServiceTier)
		c.status = append(c.status, r.Status)
		c.latency = append(c.latency, uint32(min(max(r.LatencyMS, 0), math.MaxUint32)))
		c.cacheHit = append(c.cacheHit, flag(r.CacheHit))
	}
}

func (w *Writer) append(b driver.Batch, parts []part) error {
	c := &w.cols
	// The positions follow the columns constant; tag_keys (14) and tag_values (15) are
	// appended row by row below.
	for i, v := range []any{
		0: c.ids, 1: c.times, 2: c.timeMS, 3: c.ingested, 4: c.partition, 5: c.provider, 6: c.model,
		7: c.modelPriced, 8: c.operation, 9: c.team, 10: c.feature, 11: c.env, 12: c.costCenter, 13: c.traffic,
		16: c.workflowID, 17: c.promptVersion, 18: c.responseID, 19: c.input, 20: c.output,
		21: c.cachedInput, 22: c.cacheWrite, 23: c.cacheWrite1h, 24: c.rsn, 25: c.cost, 26: c.savings,
		27: c.priced, 28: c.priceVersion, 29: c.serviceTier, 30: c.status, 31: c.latency, 32: c.cacheHit,
	} {
		if i == 14 || i == 15 {
			continue
		}
		if err := b.Column(i).Append(v); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	keys, vals := b.Column(14), b.Column(15)
	var ks, vs []string
	for _, p := range parts {
		for i := range p.rows {
			ks, vs = ks[:0], vs[:0]
			for _, t := range p.rows[i].ExtraTags {
				ks = append(ks, t.Key)
				vs = append(vs, t.Value)
			}
			if err := keys.AppendRow(ks); err != nil {
				return fmt.Errorf("column tag_keys: %w", err)
			}
			if err := vals.AppendRow(vs); err != nil {
				return fmt.Errorf("column tag_values: %w", err)
			}
		}
	}
	return nil
}

// IDs calls fn with every event id of partition that ClickHouse holds with an ingest time at
// or after since, and that ingest time.
func (w *Writer) IDs(ctx context.Context, partition int, since time.Time, fn func(id string, ingested time.Time)) error {
	rows, err := w.conn.Query(ctx, "SELECT event_id, ingested_at FROM "+w.db+".usage_events WHERE partition = ? AND ingested_at >= ?",
		uint16(partition), since.Unix())
	if err != nil {
		return fmt.Errorf("read event ids of partition %d ingested since %s from %s.usage_events: %w", partition, since.Format(time.RFC3339), w.db, err)
	}
	defer rows.Close()
	var (
		id string
		at time.Time
	)
	for rows.Next() {
		if err := rows.Scan(&id, &at); err != nil {
			return fmt.Errorf("read event ids of partition %d from %s.usage_events: %w", partition, w.db, err)
		}
		fn(id, at)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read event ids of partition %d from %s.usage_events: %w", partition, w.db, err)
	}
	return nil
}

// existingChunk bounds the ids of one lookup query, whose text ClickHouse caps at
// max_query_size (256 KiB by default).
const existingChunk = 1000

// Existing calls fn with each of ids that partition already holds in ClickHouse, whatever its
// ingest time.
func (w *Writer) Existing(ctx context.Context, partition int, ids []string, fn func(id string)) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), existingChunk)]
		ids = ids[len(chunk):]
		// A GroupSet binds as a parenthesised list; a plain slice would bind as an array,
		// which IN does not take on ClickHouse 18.
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		for i, id := range chunk {
			set.Value[i] = id
		}
		rows, err := w.conn.Query(ctx, "SELECT event_id FROM "+w.db+".usage_events WHERE partition = ? AND event_id IN ?",
			uint16(partition), set)
		if err != nil {
			return fmt.Errorf("look up %d event ids of partition %d in %s.usage_events: %w", len(chunk), partition, w.db, err)
		}
		var id string
		for rows.Next() {
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("look up event ids of partition %d in %s.usage_events: %w", partition, w.db, err)
			}
			fn(id)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("look up event ids of partition %d in %s.usage_events: %w", partition, w.db, err)
		}
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// unsigned maps a token count to UInt64. Counts are validated non-negative upstream; a
// negative one here would wrap to an absurd number, so it is stored as 0 instead.
func unsigned(n int64) uint64 { return uint64(max(n, 0)) }

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
