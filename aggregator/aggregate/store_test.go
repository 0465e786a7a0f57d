package aggregate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/aggregator/dedup"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// seedHour fills partition 0 of a fresh database with n events evenly over the hour starting
// at hour, ids "evt-<i>", response ids "resp-<i>", 20 teams, and returns the store.
func seedHour(tb testing.TB, hour time.Time, n int) store {
	tb.Helper()
	conn := chtest.Conn(tb)
	db := chtest.Database(tb, conn)
	if _, err := migrate.Apply(context.Background(), conn, db); err != nil {
		tb.Fatal(err)
	}
	q := fmt.Sprintf("INSERT INTO %s.usage_events (event_id, time, ingested_at, partition, team, provider, response_id) "+
		"SELECT concat('evt-', toString(number)), toDateTime(%d + intDiv(number * 3600, %d)), toDateTime(%d), 0, concat('team-', toString(number %% 20)), "+
		"'openai', concat('resp-', toString(number)) "+
		"FROM system.numbers LIMIT %d", db, hour.Unix(), n, hour.Unix(), n)
	if err := conn.Exec(context.Background(), q); err != nil {
		tb.Fatal(err)
	}
	return store{conn: conn, db: db}
}

// A lookup finds the ids stored within the seconds its refs span, and not an id stored at
// another time.
func TestExistingLooksNearTheEventsTimes(t *testing.T) {
	hour := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	s := seedHour(t, hour, 3600) // evt-i at hour + i seconds
	at := func(id string, t time.Time) dedup.Ref { return dedup.Ref{ID: id, From: t, To: t} }
	refs := []dedup.Ref{
		at("evt-30", hour.Add(30*time.Second)),                      // its time
		at("evt-10", hour.Add(10*time.Second+300*time.Millisecond)), // its time, with milliseconds
		at("evt-3000", hour.Add(20*time.Second)),                    // stored 50 minutes later
		at("evt-none", hour.Add(20*time.Second)),                    // not stored
	}
	var got []string
	if err := s.existing(context.Background(), 0, refs, func(id string, _ uint64) { got = append(got, id) }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"evt-10", "evt-30"}; !slices.Equal(got, want) {
		t.Errorf("found %q, want %q", got, want)
	}
}

// A response lookup finds the stored report through usage_responses, with the event id and
// team it was stored under, and nothing for a response that was not stored or lies outside
// its refs' span.
func TestExistingResponsesFindTheStoredReport(t *testing.T) {
	hour := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	s := seedHour(t, hour, 3600) // evt-i, resp-i at hour + i seconds, team-(i % 20)
	near := func(id string, t time.Time) dedup.Ref {
		return dedup.Ref{ID: id, From: t.Add(-dedup.ResponseSkew), To: t.Add(dedup.ResponseSkew)}
	}
	refs := []dedup.Ref{
		near("resp-30", hour.Add(30*time.Second)),
		near("resp-3000", hour.Add(20*time.Second)), // stored 50 minutes later
		near("resp-none", hour.Add(20*time.Second)),
	}
	var got []string
	err := s.existingResponses(context.Background(), 0, refs, func(r batch.Row, displaced bool) {
		got = append(got, fmt.Sprintf("%s %s %s %s %v", r.Provider, r.ResponseID, r.ID, r.Team, displaced))
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"openai resp-30 evt-30 team-10 false"}; !slices.Equal(got, want) {
		t.Errorf("found %q, want %q", got, want)
	}
}

// BenchmarkExistingOld measures the lookup of events timed before the de-duplication window:
// 1,000 ids drawn at random from one hour of a partition holding 3.6 million events in that
// hour (1,000 events/s), the query the aggregator makes per 1,000 late events.
func BenchmarkExistingOld(b *testing.B) {
	const perHour = 3_600_000
	hour := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	s := seedHour(b, hour, perHour)
	rng := rand.New(rand.NewPCG(1, 2))
	refs := make([]dedup.Ref, lookupChunk)
	found := 0
	for b.Loop() {
		for i := range refs {
			n := rng.IntN(perHour)
			t := hour.Add(time.Duration(n) * (time.Hour / perHour))
			refs[i] = dedup.Ref{ID: fmt.Sprintf("evt-%d", n), From: t, To: t}
		}
		if err := s.existing(context.Background(), 0, refs, func(string, uint64) { found++ }); err != nil {
			b.Fatal(err)
		}
	}
	if want := b.N * lookupChunk; found < want*99/100 {
		b.Fatalf("found %d of %d ids (a few may repeat within a draw)", found, want)
	}
}

// BenchmarkExistingResponses measures the lookup of repeated reports of provider calls:
// response ids drawn at random from one hour of a partition holding 3.6 million events in
// that hour, each looked up ResponseSkew around its time, as the aggregator does — a few per
// batch (the repeats a batch of current traffic holds) and a full chunk (a late backlog).
func BenchmarkExistingResponses(b *testing.B) {
	const perHour = 3_600_000
	hour := time.Date(2026, 11, 20, 2, 0, 0, 0, time.UTC)
	s := seedHour(b, hour, perHour)
	for _, n := range []int{10, lookupChunk} {
		b.Run(fmt.Sprintf("refs=%d", n), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			refs := make([]dedup.Ref, n)
			found := 0
			for b.Loop() {
				for i := range refs {
					n := rng.IntN(perHour)
					t := hour.Add(time.Duration(n) * (time.Hour / perHour))
					refs[i] = dedup.Ref{ID: fmt.Sprintf("resp-%d", n), From: t.Add(-dedup.ResponseSkew), To: t.Add(dedup.ResponseSkew)}
				}
				if err := s.existingResponses(context.Background(), 0, refs, func(batch.Row, bool) { found++ }); err != nil {
					b.Fatal(err)
				}
			}
			if want := b.N * n; found < want*99/100 {
				b.Fatalf("found %d of %d responses (a few may repeat within a draw)", found, want)
			}
		})
	}
}

// A lookup's chunk spans the hours its refs touch and the hours between adjacent ones, never a
// gap: late events hours before the present are looked up apart from the present's, whose
// hour may hold millions of rows (a soak at 30,000 events/s read the whole present hour for
// every batch with a late event once they shared one query).
func TestChunksDoNotBridgeIdleHours(t *testing.T) {
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	at := func(id string, h, m int) dedup.Ref {
		t := day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
		return dedup.Ref{ID: id, From: t, To: t.Add(time.Minute)}
	}
	refs := []dedup.Ref{at("now-1", 15, 30), at("late-2", 9, 20), at("late-1", 9, 10), at("prev", 14, 59), at("now-2", 16, 5)}
	var got []string
	err := chunks(refs, func(set clickhouse.GroupSet, from, to int64) error {
		got = append(got, fmt.Sprintf("%v %s-%s", set.Value, time.Unix(from, 0).UTC().Format("15:04"), time.Unix(to, 0).UTC().Format("15:04")))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"[late-1 late-2] 09:10-09:21", "[prev now-1 now-2] 14:59-16:06"}
	if !slices.Equal(got, want) {
		t.Errorf("chunks %q, want %q", got, want)
	}

	many := make([]dedup.Ref, 2*lookupChunk+1)
	for i := range many {
		many[i] = at(fmt.Sprint(i), 10, 0)
	}
	var sizes []int
	if err := chunks(many, func(set clickhouse.GroupSet, _, _ int64) error { sizes = append(sizes, len(set.Value)); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []int{lookupChunk, lookupChunk, 1}; !slices.Equal(sizes, want) {
		t.Errorf("chunk sizes %v, want %v", sizes, want)
	}
}
