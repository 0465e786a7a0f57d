package alerting

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/alerter/detect"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// The built-ins untagged_share and tier_fallback load their last hour from ClickHouse as the
// stream would have fed it: untagged as tag_coverage counts it (the unallocated team, a
// missing cost centre), tier fallbacks from usage_events.tier_fallback.
func TestBackfillUntaggedAndTierFallback(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 10, 7, 0, 0, time.UTC)
	cutoff := now.Add(-5 * time.Minute)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, provider, model, model_priced, team, feature, env, cost_center, cost_usd, priced, service_tier, price_version)")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		id, at, team, costCenter, usd, tier, version string
	}{
		{"e1", "09:30", "unallocated", "cc-1", "3", "batch", "openai/gpt-4o@2024-10-01/standard"},
		{"e2", "09:40", "search", "cc-1", "7", "batch", "openai/gpt-4o@2024-10-01/batch"},
		{"e3", "09:50", "search", "", "1", "priority", "openai/gpt-4o@2024-10-01/standard"},
		{"e4", "10:04", "", "", "100", "flex", "openai/gpt-4o@2024-10-01/standard"},
	} {
		at, _ := time.Parse("2006-01-02 15:04", "2026-11-23 "+r.at)
		if err := b.Append(r.id, at, "openai", "gpt-4o", "gpt-4o", r.team, "chat", "prod", r.costCenter,
			decimal.RequireFromString(r.usd), uint8(1), r.tier, r.version); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT sum(events) FROM "+db+".spend_1m").Scan(&n); err != nil || n != 4 {
		t.Fatalf("spend_1m holds %d events (%v), want 4", n, err)
	}
	f, err := rules.Parse("test", []byte("builtins: {unpriced_model: false, team_spike: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := detect.New(f.Rules, nil)
	if err := backfill(ctx, conn, db, e, e.Rules(), cutoff); err != nil {
		t.Fatal(err)
	}
	// e4, after the cutoff, is the stream's: $4 of $11 untagged, two fallbacks.
	got := map[string]detect.Result{}
	for _, r := range e.Evaluate(now) {
		got[r.Rule.Name] = r
	}
	if r := got[rules.BuiltinUntaggedShare]; r.Verdict != detect.Hold || r.Value != 4*rules.PicoPerUSD || r.Level != 11*rules.PicoPerUSD/10 {
		t.Errorf("untagged_share = %+v; want hold, value $4, level $1.10", r)
	}
	if r := got[rules.BuiltinTierFallback]; r.Verdict != detect.Hold || r.Value != 2 ||
		r.Labels["provider"] != "openai" || r.Labels["model"] != "gpt-4o" {
		t.Errorf("tier_fallback = %+v; want hold, value 2, openai/gpt-4o", r)
	}
	if len(got) != 2 {
		t.Errorf("results = %v, want untagged_share and tier_fallback only", got)
	}
}
