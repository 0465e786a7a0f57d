package chwrite

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// Four partitions' rows handed to the group together land in one INSERT, each row with its own
// partition, and every caller learns the result.
func TestGroupWritesConcurrentInsertsAsOneBlock(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	// A linger far longer than the test: the round must close because all four joined.
	g := NewGroup(inserter(t, db), 4, time.Hour)
	all := rows(4000, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for p := range 4 {
		wg.Go(func() { errs[p] = g.Insert(ctx, p, all[p*1000:(p+1)*1000]) })
	}
	wg.Wait()
	for p, err := range errs {
		if err != nil {
			t.Fatalf("Insert of partition %d: %v", p, err)
		}
	}
	got := chtest.String(t, conn, "SELECT arrayStringConcat(groupArray(concat(toString(partition), ':', toString(n), ':', lo)), ' ') FROM "+
		"(SELECT partition, count() AS n, min(event_id) AS lo FROM "+db+".usage_events GROUP BY partition ORDER BY partition)")
	want := "0:1000:evt_0000000000 1:1000:evt_0000001000 2:1000:evt_0000002000 3:1000:evt_0000003000"
	if got != want {
		t.Fatalf("rows per partition = %s, want %s", got, want)
	}
	// One INSERT makes one part per monthly partition of usage_events: here one.
	if got := chtest.String(t, conn, "SELECT toString(count()) FROM system.parts WHERE database = ? AND table = 'usage_events' AND active", db); got != "1" {
		t.Fatalf("usage_events has %s active parts, want 1 (one INSERT)", got)
	}
}

// A member that does not come does not hold the others back longer than the linger, and a
// failed INSERT is reported to every caller of its round.
func TestGroupLingerAndError(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	g := NewGroup(inserter(t, db), 3, 20*time.Millisecond)
	rs := rows(10, time.Now().UTC())
	if err := g.Insert(ctx, 0, rs[:5]); err != nil {
		t.Fatal(err)
	}
	if err := g.Insert(ctx, 1, rs[5:]); err != nil {
		t.Fatal(err)
	}
	if got := chtest.String(t, conn, "SELECT toString(count()) FROM "+db+".usage_events"); got != "10" {
		t.Fatalf("count() = %s, want 10", got)
	}
	if err := g.Insert(ctx, 2, nil); err != nil {
		t.Fatalf("Insert of no rows: %v", err)
	}

	bad := NewGroup(inserter(t, "tm_no_such_database"), 2, time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for p := range 2 {
		wg.Go(func() { errs[p] = bad.Insert(ctx, p, rs[p*5:(p+1)*5]) })
	}
	wg.Wait()
	for p, err := range errs {
		if err == nil {
			t.Fatalf("Insert of partition %d into a missing database succeeded", p)
		}
		if want := fmt.Sprintf("insert %d rows into tm_no_such_database.usage_events: ClickHouse answered 404 Not Found: Code: 81", 10); len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
			t.Fatalf("Insert of partition %d: error %q, want it to start with %q", p, err, want)
		}
	}
}
