package aggregate

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// store reads back what ClickHouse holds of a partition: event ids with the content
// fingerprint ClickHouse computed for them (usage_events.content_fp, migration 0040), which
// the de-duplication set needs to tell a redelivery from a conflicting second copy.
type store struct {
	conn driver.Conn
	db   string
}

// ids calls fn with every event id of partition p ingested at or after since, its ingest time
// and its content fingerprint.
func (s store) ids(ctx context.Context, p int, since time.Time, fn func(id string, ingested time.Time, fp uint64)) error {
	rows, err := s.conn.Query(ctx, "SELECT event_id, ingested_at, content_fp FROM "+s.db+".usage_events WHERE partition = ? AND ingested_at >= ?",
		uint16(p), since.Unix())
	if err != nil {
		return fmt.Errorf("read event ids of partition %d ingested since %s from %s.usage_events: %w", p, since.Format(time.RFC3339), s.db, err)
	}
	defer rows.Close()
	var (
		id string
		at time.Time
		fp uint64
	)
	for rows.Next() {
		if err := rows.Scan(&id, &at, &fp); err != nil {
			return fmt.Errorf("read event ids of partition %d from %s.usage_events: %w", p, s.db, err)
		}
		fn(id, at, fp)
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

// runningInserts counts the INSERTs into usage_events that ClickHouse is executing now.
func (s store) runningInserts(ctx context.Context) (uint64, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query LIKE ?", "INSERT INTO "+s.db+".usage_events %").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count running INSERTs into %s.usage_events: %w", s.db, err)
	}
	return n, nil
}
