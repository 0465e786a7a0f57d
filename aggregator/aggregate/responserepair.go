package aggregate

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
)

// repairResponses adds to usage_responses the reports of partition p in minutes that
// usage_events holds and it does not: its view (migration 0106) fills it in the same INSERT as
// the roll-ups', and misses what they miss when an INSERT dies half-way. It returns the rows
// it added. Like the roll-ups' repair it runs only while no INSERT of p does, so the
// difference it reads is the view's loss, and repairing twice adds nothing.
func (s store) repairResponses(ctx context.Context, p int, minutes []int64) (int, error) {
	set := make([]string, len(minutes))
	for i, m := range minutes {
		set[i] = strconv.FormatInt(m, 10)
	}
	span := fmt.Sprintf("partition = %d AND time >= toDateTime(%d) AND time < toDateTime(%d) AND intDiv(toUInt32(time), 60) * 60 IN (%s)",
		p, minutes[0], minutes[len(minutes)-1]+60, strings.Join(set, ", "))
	missing := "FROM " + s.db + ".usage_events WHERE " + span + " AND response_id != '' " +
		"AND event_id NOT IN (SELECT event_id FROM " + s.db + ".usage_responses WHERE " + span + ")"
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() "+missing).Scan(&n); err != nil {
		return 0, fmt.Errorf("compare %s.usage_responses with usage_events for partition %d: %w", s.db, p, err)
	}
	if n == 0 {
		return 0, nil
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithQueryID(chwrite.QueryID(p, "repair")))
	if err := s.conn.Exec(qctx, "INSERT INTO "+s.db+".usage_responses (partition, provider, response_id, time, team, event_id) "+
		"SELECT partition, provider, response_id, time, team, event_id "+missing); err != nil {
		return 0, fmt.Errorf("add %d rows of partition %d to %s.usage_responses: %w", n, p, s.db, err)
	}
	return int(n), nil
}
