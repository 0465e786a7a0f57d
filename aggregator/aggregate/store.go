package aggregate

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/aggregator/dedup"
)

// store reads back what ClickHouse holds of a partition: event ids with the content
// fingerprint ClickHouse computed for them (usage_events.content_fp, migration 0040), which
// the de-duplication set needs to tell a redelivery from a conflicting second copy, and the
// provider responses, which the response set needs to tell a second report of one call.
type store struct {
	conn driver.Conn
	db   string
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
// those hours instead of the whole table.
func chunks(refs []dedup.Ref, fn func(ids clickhouse.GroupSet, from, to int64) error) error {
	slices.SortFunc(refs, func(a, b dedup.Ref) int { return a.From.Compare(b.From) })
	for len(refs) > 0 {
		chunk := refs[:min(len(refs), lookupChunk)]
		refs = refs[len(chunk):]
		// A GroupSet binds as a parenthesised list; a plain slice would bind as an array,
		// which IN does not take on ClickHouse 18.
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		to := chunk[0].To
		for i, r := range chunk {
			set.Value[i] = r.ID
			if r.To.After(to) {
				to = r.To
			}
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

// existingResponses calls fn with the provider and response id of every event of partition p
// whose response id is one of refs' and whose time lies within the spans of refs' chunk. The
// caller matches the provider (in lower case, as dedup.ResponseKeyOf does).
func (s store) existingResponses(ctx context.Context, p int, refs []dedup.Ref, fn func(provider, responseID string)) error {
	return chunks(refs, func(set clickhouse.GroupSet, from, to int64) error {
		if err := s.lookupResponses(ctx, p, set, from, to, fn); err != nil {
			return fmt.Errorf("look up %d response ids of partition %d in %s.usage_events: %w", len(set.Value), p, s.db, err)
		}
		return nil
	})
}

func (s store) lookupResponses(ctx context.Context, p int, set clickhouse.GroupSet, from, to int64, fn func(provider, responseID string)) error {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT provider, response_id FROM "+s.db+".usage_events WHERE partition = ? AND time >= toDateTime(?) AND time <= toDateTime(?) AND response_id IN ?",
		uint16(p), from, to, set)
	if err != nil {
		return err
	}
	defer rows.Close()
	var provider, rid string
	for rows.Next() {
		if err := rows.Scan(&provider, &rid); err != nil {
			return err
		}
		fn(provider, rid)
	}
	return rows.Err()
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

// runningInserts counts the INSERTs into usage_events, and the roll-up repairs' INSERTs into
// spend_1m and spend_1d, that ClickHouse is executing now and that may carry rows of a
// partition for which mine is true: those whose query id names such a partition
// (chwrite.Partitions), and those whose partitions cannot be told.
func (s store) runningInserts(ctx context.Context, mine func(partition int) bool) (int, error) {
	rows, err := s.conn.Query(ctx, "SELECT query_id FROM system.processes WHERE query LIKE ? OR query LIKE ?",
		"INSERT INTO "+s.db+".usage_events %", "INSERT INTO "+s.db+".spend_1_ %")
	if err != nil {
		return 0, fmt.Errorf("list running INSERTs into %s.usage_events: %w", s.db, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return 0, fmt.Errorf("list running INSERTs into %s.usage_events: %w", s.db, err)
		}
		ps, ok := chwrite.Partitions(id)
		if !ok || slices.ContainsFunc(ps, mine) {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("list running INSERTs into %s.usage_events: %w", s.db, err)
	}
	return n, nil
}
