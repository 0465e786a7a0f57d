package alerting

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/alerter/budget"
	"github.com/tokenmeter/tokenmeter/alerter/detect"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestBackfillFromSpend1m loads baselines and budget spend from a real spend_1m: the team
// spike rule, which needs 2 weeks of history, judges a spike on the first minute of the
// alerter's life, and the budget counts the month's spend that only ClickHouse knows.
func TestBackfillFromSpend1m(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 10, 7, 0, 0, time.UTC) // a Monday
	cutoff := now.Add(-15 * time.Minute)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".spend_1m (minute, provider, model, model_priced, team, feature, env, cost_center, traffic, events, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, cost_usd, savings_usd, unpriced_events)")
	if err != nil {
		t.Fatal(err)
	}
	add := func(minute time.Time, team string, usd string, events uint64) {
		if err := b.Append(minute, "openai", "gpt-4o", "gpt-4o", team, "chat", "", "", "", events, uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0),
			decimal.RequireFromString(usd), decimal.Zero, uint64(0)); err != nil {
			t.Fatal(err)
		}
	}
	// Three past Mondays, 10:00-11:00: $6 per hour for search, in two rows a minute each
	// (a SummingMergeTree key may have several rows until merged).
	for w := 1; w <= 3; w++ {
		hour := now.Truncate(time.Hour).AddDate(0, 0, -7*w)
		for m := 0; m < 60; m++ {
			add(hour.Add(time.Duration(m)*time.Minute), "search", "0.05", 1)
			add(hour.Add(time.Duration(m)*time.Minute), "search", "0.05", 1)
		}
	}
	// This month, before the cutoff: $40.000000000001 for search; after the cutoff: $1000,
	// which must be left to the stream.
	add(time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC), "search", "40.000000000001", 3)
	add(now.Add(-5*time.Minute), "search", "1000", 1)
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	f, err := rules.Parse("test", []byte(`
builtins: {unpriced_model: false, untagged_share: false}
budgets:
  - {name: search, scope: {team: search}, limit_usd: "100"}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := detect.New(f.Rules, nil)
	if err := backfill(ctx, conn, db, e, e.Rules(), cutoff); err != nil {
		t.Fatal(err)
	}
	tr := budget.NewTracker(f.Budgets, nil)
	if err := backfillBudgets(ctx, conn, db, tr, tr.Budgets(), cutoff); err != nil {
		t.Fatal(err)
	}
	// November before the cutoff: the three Mondays ($18) and $40.000000000001.
	if st := tr.Evaluate(now)[0]; st.Spent != 58*rules.PicoPerUSD+1 {
		t.Errorf("budget spent = %s, want 58.000000000001 (the row after the cutoff belongs to the stream)", rules.FormatUSD(st.Spent))
	}
	// The stream brings $5 for search in the current minute: 15 minutes of the usual $6/h
	// is $1.50, so $5 is 3.33× — above 2×, and above the $1 floor.
	e.Add(&batch.Row{Time: now.Add(10 * time.Second), Team: "search", Model: "gpt-4o", Feature: "chat", Priced: true, CostPico: 5 * rules.PicoPerUSD})
	res := e.Evaluate(now.Add(30 * time.Second))
	if len(res) != 1 || res[0].Verdict != detect.Hold || res[0].Value != 5*rules.PicoPerUSD || res[0].Baseline != 3*rules.PicoPerUSD/2 ||
		res[0].Level != 3*rules.PicoPerUSD {
		t.Fatalf("results = %+v; want hold, value $5, baseline $1.50, level $3", res)
	}
	if got := summarize(res[0].Rule, res[0]); !strings.Contains(got, "team=search cost is 5.00 USD over the last 15m, 3.33× the usual 1.50 USD (median of the same time over the past 4 × 168h)") {
		t.Errorf("summary = %q", got)
	}
}
