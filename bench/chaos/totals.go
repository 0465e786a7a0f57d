package chaos

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Totals are the measures a run compares: events, unpriced events, every token class, cost
// and savings (exact decimals).
type Totals struct {
	Events, Unpriced                                                uint64
	Input, Output, CachedInput, CacheWrite, CacheWrite1h, Reasoning uint64
	Cost, Savings                                                   decimal.Decimal
}

func (t Totals) String() string {
	return fmt.Sprintf("events=%d unpriced=%d in=%d out=%d cached=%d cw=%d cw1h=%d reasoning=%d cost=%s savings=%s",
		t.Events, t.Unpriced, t.Input, t.Output, t.CachedInput, t.CacheWrite, t.CacheWrite1h, t.Reasoning,
		t.Cost.StringFixed(12), t.Savings.StringFixed(12))
}

// Equal reports whether every measure matches, the money to the last picodollar.
func (t Totals) Equal(o Totals) bool {
	return t.Events == o.Events && t.Unpriced == o.Unpriced && t.Input == o.Input && t.Output == o.Output &&
		t.CachedInput == o.CachedInput && t.CacheWrite == o.CacheWrite && t.CacheWrite1h == o.CacheWrite1h &&
		t.Reasoning == o.Reasoning && t.Cost.Equal(o.Cost) && t.Savings.Equal(o.Savings)
}

// Expect returns the totals that events, each counted once, must produce when priced with cat
// — the catalogue the enricher loads from the same files.
func Expect(cat *pricing.Catalog, events []event.Usage) Totals {
	var t Totals
	cost, savings := decimal.Zero, decimal.Zero
	for i := range events {
		u := &events[i]
		q := cat.Price(u.Provider, u.Model, u.ServiceTier, u.Time, u.Usage, u.CacheHit)
		t.Events++
		if !q.Priced {
			t.Unpriced++
		}
		cost = cost.Add(decimal.New(int64(q.Cost), -12))
		savings = savings.Add(decimal.New(int64(q.Savings), -12))
		t.Input += uint64(u.Usage.Input)
		t.Output += uint64(u.Usage.Output)
		t.CachedInput += uint64(u.Usage.CachedInput)
		t.CacheWrite += uint64(u.Usage.CacheWrite)
		t.CacheWrite1h += uint64(u.Usage.CacheWrite1h)
		t.Reasoning += uint64(u.Usage.Reasoning)
	}
	t.Cost, t.Savings = cost, savings
	return t
}

// Tables lists what Measure reads: usage_events by row, the roll-ups by their counters.
var Tables = []struct{ Name, Events, Unpriced string }{
	{"usage_events", "count()", "sum(priced = 0)"},
	{"spend_1m", "sum(events)", "sum(unpriced_events)"},
	{"spend_1d", "sum(events)", "sum(unpriced_events)"},
}

// Measure reads the totals of one table of db (a name from Tables) from ClickHouse. Sums of
// Decimal are read as strings and parsed exactly, since toString(Decimal) differs between
// ClickHouse versions only in trailing zeros.
func Measure(ctx context.Context, conn driver.Conn, db, table string) (Totals, error) {
	var events, unpriced string
	for _, tb := range Tables {
		if tb.Name == table {
			events, unpriced = tb.Events, tb.Unpriced
		}
	}
	if events == "" {
		return Totals{}, fmt.Errorf("measure %s: not one of the tables compared", table)
	}
	q := fmt.Sprintf(`SELECT toUInt64(%s), toUInt64(%s), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
		sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(reasoning_tokens),
		toString(sum(cost_usd)), toString(sum(savings_usd)) FROM %s.%s`, events, unpriced, db, table)
	var t Totals
	var cost, savings string
	if err := conn.QueryRow(ctx, q).Scan(&t.Events, &t.Unpriced, &t.Input, &t.Output, &t.CachedInput,
		&t.CacheWrite, &t.CacheWrite1h, &t.Reasoning, &cost, &savings); err != nil {
		return Totals{}, fmt.Errorf("measure %s.%s: %w", db, table, err)
	}
	var err error
	if t.Cost, err = decimal.NewFromString(cost); err != nil {
		return Totals{}, fmt.Errorf("measure %s.%s: cost %q: %w", db, table, cost, err)
	}
	if t.Savings, err = decimal.NewFromString(savings); err != nil {
		return Totals{}, fmt.Errorf("measure %s.%s: savings %q: %w", db, table, savings, err)
	}
	return t, nil
}

// Stored counts the rows and the distinct event ids of usage_events.
func Stored(ctx context.Context, conn driver.Conn, db string) (rows, distinct uint64, err error) {
	err = conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+db+".usage_events").Scan(&rows, &distinct)
	if err != nil {
		return 0, 0, fmt.Errorf("count usage_events of %s: %w", db, err)
	}
	return rows, distinct, nil
}

// Busy describes the first consumer of USAGE_RAW or USAGE_ENRICHED that still has messages
// pending or unacknowledged, or returns "" when the pipeline holds nothing in flight. A
// consumer learns of new messages asynchronously, so pending counts alone can read 0 just
// after a publish: the stream's last message must also be acked by one of its consumers.
func Busy(ctx context.Context, js jetstream.JetStream) (string, error) {
	for _, name := range []string{stream.Raw, stream.Enriched} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return "", fmt.Errorf("look up stream %s: %w", name, err)
		}
		sinfo, err := s.Info(ctx)
		if err != nil {
			return "", fmt.Errorf("stream %s info: %w", name, err)
		}
		var floor uint64
		lister := s.ListConsumers(ctx)
		for info := range lister.Info() {
			if info.Name == stream.HistoryConsumer {
				continue // the copy into USAGE_HISTORY is not work in flight
			}
			if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
				return fmt.Sprintf("%s/%s: %d pending, %d unacknowledged, %d awaiting redelivery",
					name, info.Name, info.NumPending, info.NumAckPending, info.NumRedelivered), nil
			}
			floor = max(floor, info.AckFloor.Stream)
		}
		if err := lister.Err(); err != nil {
			return "", fmt.Errorf("list consumers of %s: %w", name, err)
		}
		if floor != sinfo.State.LastSeq {
			return fmt.Sprintf("%s: last message %d not acknowledged yet (highest ack floor %d)", name, sinfo.State.LastSeq, floor), nil
		}
	}
	return "", nil
}
