package aggregate

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/aggregator/dedup"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// store reads back what ClickHouse holds of a partition: event ids with the content
// fingerprint ClickHouse computed for them (usage_events.content_fp, migration 0040), which
// the de-duplication set needs to tell a redelivery from a conflicting second copy, and the
// provider responses, which the response set needs to tell a second report of one call.
//
// In cluster mode it reads the shard-local database of one replica of the partition's shard;
// peers are the shard's other replicas, where runningInserts also looks, and breaker the
// shard's circuit breaker (nil: the aggregator's).
type store struct {
	conn    driver.Conn
	db      string
	peers   []driver.Conn
	breaker *gobreaker.CircuitBreaker
}

// stored is what the de-duplication sets need of a stored event.
type stored struct {
	id         string
	ingested   time.Time
	time       time.Time
	fp         uint64 // content fingerprint
	provider   string
	responseID string
}

// ids calls fn with every event of partition p ingested, or timed, at or after since: its id,
// ingest time, own time, content fingerprint, provider and response id.
func (s store) ids(ctx context.Context, p int, since time.Time, fn func(e *stored)) error {
	rows, err := s.conn.Query(ctx, "SELECT event_id, ingested_at, time, content_fp, provider, response_id FROM "+s.db+".usage_events WHERE partition = ? AND (ingested_at >= ? OR time >= toDateTime(?))",
		uint16(p), since.Unix(), since.Unix())
	if err != nil {
		return fmt.Errorf("read event ids of partition %d ingested or timed since %s from %s.usage_events: %w", p, since.Format(time.RFC3339), s.db, err)
	}
	defer rows.Close()
	var e stored
	for rows.Next() {
		if err := rows.Scan(&e.id, &e.ingested, &e.time, &e.fp, &e.provider, &e.responseID); err != nil {
			return fmt.Errorf("read event ids of partition %d from %s.usage_events: %w", p, s.db, err)
		}
		fn(&e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read event ids of partition %d from %s.usage_events: %w", p, s.db, err)
	}
	return nil
}

// oldHours calls fn with every hour of event time in which partition p holds an event both
// ingested and timed before since: those the de-duplication sets, which keep events from the
// later of the two, cannot vouch for.
func (s store) oldHours(ctx context.Context, p int, since time.Time, fn func(hour time.Time)) error {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT toStartOfHour(time) FROM "+s.db+".usage_events WHERE partition = ? AND ingested_at < ? AND time < toDateTime(?)",
		uint16(p), since.Unix(), since.Unix())
	if err != nil {
		return fmt.Errorf("read the hours of partition %d with events from before %s in %s.usage_events: %w", p, since.Format(time.RFC3339), s.db, err)
	}
	defer rows.Close()
	var hour time.Time
	for rows.Next() {
		if err := rows.Scan(&hour); err != nil {
			return fmt.Errorf("read the hours of partition %d from %s.usage_events: %w", p, s.db, err)
		}
		fn(hour)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the hours of partition %d from %s.usage_events: %w", p, s.db, err)
	}
	return nil
}

// lookupChunk bounds the ids of one lookup query, whose text ClickHouse caps at
// max_query_size (256 KiB by default).
const lookupChunk = 1000

// chunks sorts refs by the start of their spans and calls fn with consecutive runs of at most
// lookupChunk, as a parenthesised list of their ids, and the first and last second their spans
// cover. usage_events is ordered by the hour of the event's time, so ClickHouse reads only
// those hours instead of the whole table; a run never bridges an hour that none of its spans
// touch, so that a late event's lookup does not read every hour between it and the present.
func chunks(refs []dedup.Ref, fn func(ids clickhouse.GroupSet, from, to int64) error) error {
	slices.SortFunc(refs, func(a, b dedup.Ref) int { return a.From.Compare(b.From) })
	for len(refs) > 0 {
		n, to := 1, refs[0].To
		for ; n < len(refs) && n < lookupChunk; n++ {
			if refs[n].From.Truncate(time.Hour).After(to.Truncate(time.Hour).Add(time.Hour)) {
				break
			}
			if refs[n].To.After(to) {
				to = refs[n].To
			}
		}
		chunk := refs[:n]
		refs = refs[n:]
		// A GroupSet binds as a parenthesised list; a plain slice would bind as an array,
		// which IN does not take on ClickHouse 18.
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		for i, r := range chunk {
			set.Value[i] = r.ID
		}
		if err := fn(set, chunk[0].From.Truncate(time.Second).Unix(), to.Unix()); err != nil {
			return err
		}
	}
	return nil
}

// existing calls fn with each event of partition p whose id is one of refs' and whose own
// time (to the second) lies within the spans of refs' chunk, and its content fingerprint.
func (s store) existing(ctx context.Context, p int, refs []dedup.Ref, fn func(id string, fp uint64)) error {
	return chunks(refs, func(set clickhouse.GroupSet, from, to int64) error {
		if err := s.lookup(ctx, p, set, from, to, fn); err != nil {
			return fmt.Errorf("look up %d event ids of partition %d in %s.usage_events: %w", len(set.Value), p, s.db, err)
		}
		return nil
	})
}

// existingResponses calls fn with every report of partition p whose response id is one of
// refs' and whose time lies within the spans of refs' chunk, and whether another displaced it
// (dedup.Store.Responses). The caller matches the provider (in lower case, as
// keyset.ResponseKeyOf does).
func (s store) existingResponses(ctx context.Context, p int, refs []dedup.Ref, fn func(stored batch.Row, displaced bool)) error {
	return chunks(refs, func(set clickhouse.GroupSet, from, to int64) error {
		if err := s.lookupResponses(ctx, p, set, from, to, fn); err != nil {
			return fmt.Errorf("look up %d response ids of partition %d in %s.usage_events: %w", len(set.Value), p, s.db, err)
		}
		return nil
	})
}

func (s store) lookupResponses(ctx context.Context, p int, set clickhouse.GroupSet, from, to int64, fn func(stored batch.Row, displaced bool)) error {
	rows, err := s.conn.Query(ctx, "SELECT provider, response_id, event_id, source, time, model, team, "+
		"input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, unit_keys, estimated, "+
		"event_id IN (SELECT event_id FROM "+s.db+".cost_corrections WHERE kind = 'displaced' AND time >= toDateTime(?) AND time <= toDateTime(?)) "+
		"FROM "+s.db+".usage_events WHERE partition = ? AND time >= toDateTime(?) AND time <= toDateTime(?) AND response_id IN ? "+
		// usage_events' sorting key finds an event by its hour, team and id, not by response:
		// those come from usage_responses, sorted by response (migration 0105).
		"AND (toStartOfHour(time), team, event_id) IN (SELECT toStartOfHour(time), team, event_id FROM "+s.db+".usage_responses "+
		"WHERE partition = ? AND response_id IN ? AND time >= toDateTime(?) AND time <= toDateTime(?))",
		from, to, uint16(p), from, to, set, uint16(p), set, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r         batch.Row
			tok       [6]uint64
			displaced uint8
			estimated uint8
		)
		var unitKeys []string
		if err := rows.Scan(&r.Provider, &r.ResponseID, &r.ID, &r.Source, &r.Time, &r.Model, &r.Team,
			&tok[0], &tok[1], &tok[2], &tok[3], &tok[4], &tok[5], &unitKeys, &estimated, &displaced); err != nil {
			return err
		}
		r.Time, r.Estimated = r.Time.UTC(), estimated == 1
		for _, k := range unitKeys { // the keys make its Detail; their counts are not compared
			r.Units = append(r.Units, batch.Unit{Key: k})
		}
		t := &r.Tokens
		t.Input, t.Output, t.CachedInput, t.CacheWrite, t.CacheWrite1h, t.Reasoning =
			int64(tok[0]), int64(tok[1]), int64(tok[2]), int64(tok[3]), int64(tok[4]), int64(tok[5])
		fn(r, displaced == 1)
	}
	return rows.Err()
}

// displace takes each displaced report of ds out of spend_1m and spend_1d: a 'displaced' row
// in cost_corrections with the negation of the report's current state — its latest re-rating
// ('apply' row of the highest seq), else its usage_events row — under which the roll-ups hold
// it. A report displaced already (a crash before the batch was acked) is not displaced again.
func (s store) displace(ctx context.Context, p int, ds []dedup.Decision, at time.Time) error {
	type cur struct {
		modelPriced, version string
		priced               uint8
		cost, savings        decimal.Decimal
		unitCosts            []decimal.Decimal // in the order of the report's unit_keys
		seq                  uint64
		applied              bool
	}
	var refs []dedup.Ref
	for _, d := range ds {
		if d.Displaced {
			refs = append(refs, dedup.Ref{ID: d.Dropped.ID, From: d.Dropped.Time, To: d.Dropped.Time})
		}
	}
	if len(refs) == 0 {
		return nil
	}
	done := map[string]bool{}
	latest := map[string]cur{}
	err := chunks(refs, func(set clickhouse.GroupSet, from, to int64) error {
		rows, err := s.conn.Query(ctx, "SELECT event_id, kind, seq, model_priced, priced, cost_usd, savings_usd, price_version, unit_costs_usd FROM "+s.db+
			".cost_corrections WHERE kind IN ('displaced', 'apply') AND time >= toDateTime(?) AND time <= toDateTime(?) AND event_id IN ?", from, to, set)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id, kind string
				c        cur
			)
			if err := rows.Scan(&id, &kind, &c.seq, &c.modelPriced, &c.priced, &c.cost, &c.savings, &c.version, &c.unitCosts); err != nil {
				return err
			}
			if kind == "displaced" {
				done[id] = true
			} else if l, ok := latest[id]; !ok || c.seq > l.seq {
				c.applied = true
				latest[id] = c
			}
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("read the corrections of %d displaced reports of partition %d in %s.cost_corrections: %w", len(refs), p, s.db, err)
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".cost_corrections (rerate_id, applied_at, seq, kind, event_id, time, "+
		"provider, model, model_priced, team, feature, env, cost_center, traffic, events, "+
		"input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, "+
		"cost_usd, savings_usd, priced, unpriced_events, price_version, unit_keys, unit_counts, unit_costs_usd)")
	if err != nil {
		return fmt.Errorf("prepare the displacement of reports of partition %d: %w", p, err)
	}
	n := 0
	err = chunks(refs, func(set clickhouse.GroupSet, from, to int64) error {
		rows, err := s.conn.Query(ctx, "SELECT event_id, time, provider, model, model_priced, team, feature, env, cost_center, traffic, "+
			"input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, "+
			"cost_usd, savings_usd, priced, price_version, unit_keys, unit_counts, unit_costs_usd FROM "+s.db+".usage_events WHERE partition = ? AND time >= toDateTime(?) AND time <= toDateTime(?) AND event_id IN ?",
			uint16(p), from, to, set)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id                                            string
				t                                             time.Time
				provider, model, team, feature, env, cc, traf string
				c                                             cur
				tok                                           [6]uint64
				unitKeys                                      []string
				unitCounts                                    []uint64
			)
			if err := rows.Scan(&id, &t, &provider, &model, &c.modelPriced, &team, &feature, &env, &cc, &traf,
				&tok[0], &tok[1], &tok[2], &tok[3], &tok[4], &tok[5], &c.cost, &c.savings, &c.priced, &c.version,
				&unitKeys, &unitCounts, &c.unitCosts); err != nil {
				return err
			}
			if done[id] {
				continue
			}
			done[id] = true // one row per event, whatever the chunks
			if l, ok := latest[id]; ok {
				c = l
			}
			var unpriced int8
			if c.priced == 0 {
				unpriced = -1
			}
			// The report's units leave unit_spend_1m/1d with it (migration 0091).
			counts := make([]int64, len(unitKeys))
			costs := make([]decimal.Decimal, len(unitKeys))
			for i := range unitKeys {
				if i < len(unitCounts) {
					counts[i] = -int64(unitCounts[i])
				}
				if i < len(c.unitCosts) {
					costs[i] = c.unitCosts[i].Neg()
				}
			}
			if err := b.Append("displaced", at, uint64(0), "displaced", id, t,
				provider, model, c.modelPriced, team, feature, env, cc, traf, int8(-1),
				-int64(tok[0]), -int64(tok[1]), -int64(tok[2]), -int64(tok[3]), -int64(tok[4]), -int64(tok[5]),
				c.cost.Neg(), c.savings.Neg(), c.priced, unpriced, c.version, unitKeys, counts, costs); err != nil {
				return err
			}
			n++
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("read %d displaced reports of partition %d in %s.usage_events: %w", len(refs), p, s.db, err)
	}
	if n == 0 {
		return b.Abort()
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d displacements of partition %d into %s.cost_corrections: %w", n, p, s.db, err)
	}
	return nil
}

// recordDecisions writes ds to usage_conflicts.
func (s store) recordDecisions(ctx context.Context, p int, ds []dedup.Decision, at time.Time) error {
	if len(ds) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".usage_conflicts (decided_at, time, partition, provider, response_id, reason, displaced, "+
		"kept_event_id, kept_source, kept_model, kept_team, kept_input_tokens, kept_output_tokens, kept_cached_input_tokens, kept_cache_write_tokens, kept_reasoning_tokens, "+
		"dropped_event_id, dropped_source, dropped_model, dropped_team, dropped_input_tokens, dropped_output_tokens, dropped_cached_input_tokens, dropped_cache_write_tokens, dropped_reasoning_tokens)")
	if err != nil {
		return fmt.Errorf("prepare the record of %d decisions of partition %d: %w", len(ds), p, err)
	}
	u := func(n int64) uint64 { return uint64(max(n, 0)) }
	for _, d := range ds {
		k, x := &d.Kept, &d.Dropped
		if err := b.Append(at, k.Time.Truncate(time.Second), uint16(p), k.Provider, k.ResponseID, decisionReason(&d), boolByte(d.Displaced),
			k.ID, k.Source, k.Model, k.Team, u(k.Tokens.Input), u(k.Tokens.Output), u(k.Tokens.CachedInput), u(k.Tokens.CacheWrite), u(k.Tokens.Reasoning),
			x.ID, x.Source, x.Model, x.Team, u(x.Tokens.Input), u(x.Tokens.Output), u(x.Tokens.CachedInput), u(x.Tokens.CacheWrite), u(x.Tokens.Reasoning)); err != nil {
			return fmt.Errorf("record the decision on %s and %s: %w", k.ID, x.ID, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d decisions of partition %d into %s.usage_conflicts: %w", len(ds), p, s.db, err)
	}
	return nil
}

// decisionReason says why d.Kept counts rather than d.Dropped (usage_conflicts.reason).
func decisionReason(d *dedup.Decision) string {
	switch k, x := &d.Kept, &d.Dropped; {
	case x.Estimated && !k.Estimated:
		return "measured"
	case k.Rank() > x.Rank():
		return "higher_rank"
	case k.Rank() == x.Rank() && k.Detail() > x.Detail():
		return "more_detail"
	}
	return "first"
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (s store) lookup(ctx context.Context, p int, set clickhouse.GroupSet, from, to int64, fn func(id string, fp uint64)) error {
	rows, err := s.conn.Query(ctx, "SELECT event_id, content_fp FROM "+s.db+".usage_events WHERE partition = ? AND time >= toDateTime(?) AND time <= toDateTime(?) AND event_id IN ?",
		uint16(p), from, to, set)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		id string
		fp uint64
	)
	for rows.Next() {
		if err := rows.Scan(&id, &fp); err != nil {
			return err
		}
		fn(id, fp)
	}
	return rows.Err()
}

// runningInserts lists the INSERTs into usage_events, and the roll-up repairs' INSERTs into
// spend_1m and spend_1d, that ClickHouse is executing now and that may carry rows of a
// partition for which mine is true: those whose query id names such a partition
// (chwrite.Partitions), and those whose partitions cannot be told (known false).
//
// In cluster mode it looks on every replica of the shard: an INSERT the writer sent to a
// replica it has since moved away from may still run there. A replica that does not answer
// runs nothing that could land (see shard).
func (s store) runningInserts(ctx context.Context, mine func(partition int) bool) ([]runningInsert, error) {
	out, err := runningInsertsOn(ctx, s.conn, s.db, mine)
	if err != nil {
		return nil, err
	}
	for _, peer := range s.peers {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		more, err := runningInsertsOn(pctx, peer, s.db, mine)
		cancel()
		if err == nil {
			out = append(out, more...)
		}
	}
	return out, nil
}

func runningInsertsOn(ctx context.Context, conn driver.Conn, db string, mine func(partition int) bool) ([]runningInsert, error) {
	s := store{conn: conn, db: db}
	// The writers' INSERTs and their repairs: every table a repair compares with usage_events.
	rows, err := s.conn.Query(ctx, "SELECT query_id FROM system.processes WHERE query LIKE ? OR query LIKE ? OR query LIKE ? OR query LIKE ?",
		"INSERT INTO "+s.db+".usage_events %", "INSERT INTO "+s.db+".spend_1_ %", "INSERT INTO "+s.db+".unit_spend_1_ %", "INSERT INTO "+s.db+".usage_responses %")
	if err != nil {
		return nil, fmt.Errorf("list running INSERTs into %s.usage_events: %w", s.db, err)
	}
	defer rows.Close()
	var out []runningInsert
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list running INSERTs into %s.usage_events: %w", s.db, err)
		}
		ps, ok := chwrite.Partitions(id)
		if !ok || slices.ContainsFunc(ps, mine) {
			out = append(out, runningInsert{id: id, known: ok})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list running INSERTs into %s.usage_events: %w", s.db, err)
	}
	return out, nil
}

// runningInsert is an INSERT ClickHouse is executing; known when its query id names its
// partitions (an aggregator's own), false for one made by hand.
type runningInsert struct {
	id    string
	known bool
}

// kill ends the running queries ids (KILL QUERY ... SYNC: once it returns they have ended).
func (s store) kill(ctx context.Context, ids []string) error {
	set := clickhouse.GroupSet{Value: make([]any, len(ids))}
	for i, id := range ids {
		set.Value[i] = id
	}
	if err := s.conn.Exec(ctx, "KILL QUERY WHERE query_id IN ? SYNC", set); err != nil {
		return fmt.Errorf("kill %d stuck INSERTs: %w", len(ids), err)
	}
	for _, peer := range s.peers { // the INSERTs may run there (cluster mode); ids are unique
		_ = peer.Exec(ctx, "KILL QUERY WHERE query_id IN ? SYNC", set)
	}
	return nil
}
