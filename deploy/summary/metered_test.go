package summary_test

import (
	"context"
	"testing"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// SeedEstimated seeds summarytest's events and two calls the proxy estimated on Now's day: e11
// (search, $0.50), and e12 (support, $1), displaced since by a measured report.
func seedEstimated(t *testing.T) (string, func(by string, f summary.Filter) string) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	ctx := context.Background()
	for _, q := range []string{
		// INSERT … SELECT: the native protocol takes an INSERT without a data block only so.
		"INSERT INTO " + db + ".usage_events (event_id, time, provider, model, model_priced, team, feature, env, cost_center, input_tokens, output_tokens, cost_usd, priced, estimated, estimate_reason) " +
			"SELECT 'e11', toDateTime('2026-11-20 11:45:00'), 'openai', 'gpt-4o', 'gpt-4o', 'search', 'summarize', 'prod', 'cc-search', 800, 40, toDecimal128('0.5', 12), 1, 1, 'cut_stream'",
		"INSERT INTO " + db + ".usage_events (event_id, time, provider, model, model_priced, team, feature, env, cost_center, input_tokens, output_tokens, cost_usd, priced, estimated, estimate_reason) " +
			"SELECT 'e12', toDateTime('2026-11-20 11:50:00'), 'anthropic', 'claude-sonnet-4-5', 'claude-sonnet-4-5', 'support', 'chat', 'prod', 'cc-support', 900, 0, toDecimal128('1', 12), 1, 1, 'upstream_timeout'",
		"INSERT INTO " + db + ".cost_corrections (kind, event_id, time, provider, model, team, events, cost_usd, priced) " +
			"SELECT 'displaced', 'e12', toDateTime('2026-11-20 11:50:00'), 'anthropic', 'claude-sonnet-4-5', 'support', -1, toDecimal128('-1', 12), 1",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return db, func(by string, f summary.Filter) string {
		t.Helper()
		lines, err := summary.MeteredShare(ctx, conn, db, by, summary.Days(summarytest.Now(), 1), f, 10)
		if err != nil {
			t.Fatal(err)
		}
		return asJSON(t, lines)
	}
}

func TestMeteredShare(t *testing.T) {
	_, share := seedEstimated(t)
	for _, tc := range []struct {
		by   string
		f    summary.Filter
		want string
	}{
		{"team", nil, `[{"key":"search","events":3,"estimated_events":1,"cost_usd":"2.25","estimated_usd":"0.5","metered_share_pct":"66.7"},` +
			`{"key":"support","events":1,"estimated_events":0,"cost_usd":"2.25","estimated_usd":"0","metered_share_pct":"100.0"}]`},
		{"feature", summary.Filter{"team": "search"}, `[{"key":"summarize","events":3,"estimated_events":1,"cost_usd":"2.25","estimated_usd":"0.5","metered_share_pct":"66.7"}]`},
		{"model", summary.Filter{"provider": "anthropic"}, `[{"key":"anthropic/claude-sonnet-4-5","events":1,"estimated_events":0,"cost_usd":"2.25","estimated_usd":"0","metered_share_pct":"100.0"}]`},
	} {
		if got := share(tc.by, tc.f); got != tc.want {
			t.Errorf("metered share by %s %v:\n got %s\nwant %s", tc.by, tc.f, got, tc.want)
		}
	}
}
