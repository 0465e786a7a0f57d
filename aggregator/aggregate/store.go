package aggregate

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
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
	fp         uint64 // content fingerprint
	provider   string
	responseID string
}

// ids calls fn with every event of partition p ingested at or after since: its id, ingest
// time, content fingerprint, provider and response id.
func (s store) ids(ctx context.Context, p int, since time.Time, fn func(e *stored)) error {
	rows, err := s.conn.Query(ctx, "SELECT event_id, ingested_at, content_fp, provider, response_id FROM "+s.db+".usage_events WHERE partition = ? AND ingested_at >= ?",
		uint16(p), since.Unix())
	if err != nil {
		return fmt.Errorf("read event ids of partition %d ingested since %s from %s.usage_events: %w", p, since.Format(time.RFC3339), s.db, err)
	}
	defer rows.Close()
	var e stored
	for rows.Next() {
		if err := rows.Scan(&e.id, &e.ingested, &e.fp, &e.provider, &e.responseID); err != nil {
			return fmt.Errorf("read event ids of partition %d from %s.usage_events: %w", p, s.db, err)
		}
		fn(&e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read event ids of partition %d from %s.usage_events: %w", p, s.db, err)
	}
	return nil
}

// lookupChunk bounds the ids of one lookup query, whose text ClickHouse caps at
// max_query_size (256 KiB by default).
const lookupChunk = 1000

// existing calls fn with each of ids that partition p already holds, whatever its ingest time,
// and its content fingerprint.
func (s store) existing(ctx context.Context, p int, ids []string, fn func(id string, fp uint64)) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), lookupChunk)]
		ids = ids[len(chunk):]
		// A GroupSet binds as a parenthesised list; a plain slice would bind as an array,
		// which IN does not take on ClickHouse 18.
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		for i, id := range chunk {
			set.Value[i] = id
		}
		if err := s.lookup(ctx, p, set, fn); err != nil {
			return fmt.Errorf("look up %d event ids of partition %d in %s.usage_events: %w", len(chunk), p, s.db, err)
		}
	}
	return nil
}

// existingResponses calls fn with the provider and response id of every event of partition p
// whose response id is one of responseIDs, whatever its ingest time. The caller matches the
// provider (in lower case, as dedup.ResponseKeyOf does).
func (s store) existingResponses(ctx context.Context, p int, responseIDs []string, fn func(provider, responseID string)) error {
	for len(responseIDs) > 0 {
		chunk := responseIDs[:min(len(responseIDs), lookupChunk)]
		responseIDs = responseIDs[len(chunk):]
		set := clickhouse.GroupSet{Value: make([]any, len(chunk))}
		for i, id := range chunk {
			set.Value[i] = id
		}
		if err := s.lookupResponses(ctx, p, set, fn); err != nil {
			return fmt.Errorf("look up %d response ids of partition %d in %s.usage_events: %w", len(chunk), p, s.db, err)
		}
	}
	return nil
}

func (s store) lookupResponses(ctx context.Context, p int, set clickhouse.GroupSet, fn func(provider, responseID string)) error {
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT provider, response_id FROM "+s.db+".usage_events WHERE partition = ? AND response_id IN ?", uint16(p), set)
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

func (s store) lookup(ctx context.Context, p int, set clickhouse.GroupSet, fn func(id string, fp uint64)) error {
	rows, err := s.conn.Query(ctx, "SELECT event_id, content_fp FROM "+s.db+".usage_events WHERE partition = ? AND event_id IN ?", uint16(p), set)
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

// runningInserts counts the INSERTs into usage_events that ClickHouse is executing now and
// that may carry rows of a partition for which mine is true: those whose query id names such
// a partition (chwrite.Partitions), and those whose partitions cannot be told.
func (s store) runningInserts(ctx context.Context, mine func(partition int) bool) (int, error) {
	rows, err := s.conn.Query(ctx, "SELECT query_id FROM system.processes WHERE query LIKE ?", "INSERT INTO "+s.db+".usage_events %")
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
