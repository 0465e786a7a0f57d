package attribute

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/chschema"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestTagCoverageView checks the tag_coverage view (migration 0026) on a fresh database:
// spend is fully attributed only when team (not "unallocated"), feature, env and cost centre
// are all set.
func TestTagCoverageView(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := conn.Exec(ctx, m.Statement(db)); err != nil {
			t.Fatalf("migration %s: %v", m.Name, err)
		}
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, team, feature, env, cost_center, cost_usd, priced)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 11, 3, 9, 0, 0, 0, time.UTC)
	for _, e := range []struct {
		id, team, feature, env, cc, cost string
	}{
		{"a", "search", "chat", "prod", "cc-1", "0.30"},
		{"b", "search", "chat", "prod", "", "0.10"},          // no cost centre
		{"c", "search", "", "prod", "cc-1", "0.05"},          // no feature
		{"d", "unallocated", "chat", "prod", "cc-1", "0.20"}, // the default bucket
		{"e", "", "", "", "", "0.15"},
		{"f", "payments", "checkout", "prod", "cc-2", "0.000000000001"},
	} {
		if err := b.Append(e.id, at, e.team, e.feature, e.env, e.cc, decimal.RequireFromString(e.cost), uint8(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT team, cost_usd, attributed_cost_usd, events, attributed_events, attributed_share FROM "+db+".tag_coverage ORDER BY team")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type line struct {
		team             string
		cost, attributed string
		events, attrEv   uint64
		share            float64
	}
	want := []line{
		{"", "0.15", "0", 1, 0, 0},
		{"payments", "0.000000000001", "0.000000000001", 1, 1, 1},
		{"search", "0.45", "0.3", 3, 1, 0.3 / 0.45},
		{"unallocated", "0.2", "0", 1, 0, 0},
	}
	i := 0
	for rows.Next() {
		var l line
		var cost, attributed decimal.Decimal
		if err := rows.Scan(&l.team, &cost, &attributed, &l.events, &l.attrEv, &l.share); err != nil {
			t.Fatal(err)
		}
		if i >= len(want) {
			t.Fatalf("extra row %+v", l)
		}
		w := want[i]
		if l.team != w.team || !cost.Equal(decimal.RequireFromString(w.cost)) || !attributed.Equal(decimal.RequireFromString(w.attributed)) ||
			l.events != w.events || l.attrEv != w.attrEv || l.share != w.share {
			t.Errorf("row %d: team %q cost %s attributed %s events %d/%d share %v; want %+v", i, l.team, cost, attributed, l.attrEv, l.events, l.share, w)
		}
		i++
	}
	if err := rows.Err(); err != nil || i != len(want) {
		t.Fatalf("%d rows, err %v; want %d", i, err, len(want))
	}
}
