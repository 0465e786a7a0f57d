package alerting

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

const driftRules = `
builtins: {unpriced_model: false, untagged_share: false, team_spike: false, tier_fallback: false}
billing_drift: {above_percent: "5", min_usd: "1", days: 7}
route: {group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: finance
    webhook: {url: "%s"}
`

// TestBillingDriftFiresOnceAndResolves: a week of metered spend beside the providers' bills.
// OpenAI billed $112 for what tokenmeter metered at $100 (12 %, above 5 % and $1): one page.
// Anthropic's 1 % stays quiet; a model tokenmeter could not price, a day whose bill is not
// complete, today's partial day and a provider without imported bills are all left out. A
// corrected bill (a new import of the day) clears it; it resolves after keep_firing_for (1 h).
func TestBillingDriftFiresOnceAndResolves(t *testing.T) {
	hook := newWebhook(t)
	e := newEnv(t, strings.Replace(driftRules, "%s", hook.srv.URL, 1))
	now := e.clock.Now()
	today := now.UTC().Truncate(24 * time.Hour)
	d1, d2 := today.AddDate(0, 0, -1), today.AddDate(0, 0, -2)
	conn := chtest.Conn(t)
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		if err := conn.Exec(ctx, strings.ReplaceAll(q, "{db}", e.db)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	a, _ := e.start()
	metered := func(id string, day time.Time, provider, model string, usd string, priced int) {
		exec(fmt.Sprintf("INSERT INTO {db}.usage_events (event_id, time, ingested_at, provider, model, model_priced, cost_usd, priced) "+
			"SELECT '%s', toDateTime(%d), toDateTime(%d), '%s', '%s', '%s', toDecimal128('%s', 12), %d",
			id, day.Add(12*time.Hour).Unix(), day.Add(12*time.Hour).Unix(), provider, model, model, usd, priced))
	}
	metered("o1", d2, "openai", "gpt-4o", "60", 1)
	metered("o2", d1, "openai", "gpt-4o", "40", 1)
	metered("o3", d1, "openai", "mystery-1", "0", 0) // unpriced: its bill is not drift
	metered("o4", today, "openai", "gpt-4o", "5", 1) // today: not complete
	metered("a1", d1, "anthropic", "claude-sonnet-4-5", "50", 1)
	metered("m1", d1, "mistral", "mistral-large", "9", 1) // no bills imported: left out
	billed := func(day time.Time, source, provider, model, usd string, version int) {
		exec(fmt.Sprintf("INSERT INTO {db}.provider_usage_rows (day, source, provider, model, token_class, tokens, cost_usd, import_id, import_version) "+
			"SELECT toDate(%d), '%s', '%s', '%s', 'output', 1000, toDecimal128('%s', 12), 'i%d', %d", day.Unix()/86400, source, provider, model, usd, version, version))
	}
	imported := func(day time.Time, source string, version, complete int) {
		exec(fmt.Sprintf("INSERT INTO {db}.provider_usage_imports (source, day, import_id, import_version, imported_at, rows, complete) "+
			"SELECT '%s', toDate(%d), 'i%d', %d, now(), 1, %d", source, day.Unix()/86400, version, version, complete))
	}
	billed(d2, "openai", "openai", "gpt-4o", "66", 1)
	billed(d1, "openai", "openai", "gpt-4o", "46", 1)
	billed(d1, "openai", "openai", "mystery-1", "30", 1)
	imported(d2, "openai", 1, 1)
	imported(d1, "openai", 1, 1)
	billed(d1, "anthropic", "anthropic", "claude-sonnet-4-5", "50.5", 1)
	imported(d1, "anthropic", 1, 1)
	billed(today, "openai", "openai", "gpt-4o", "500", 1)
	imported(today, "openai", 1, 0)

	if err := a.RefreshDrift(ctx); err != nil {
		t.Fatal(err)
	}
	e.tickAt(a, now.Add(time.Second))
	e.tickAt(a, now.Add(3*time.Second))
	if got, want := strings.Join(hook.statuses(), "; "), "firing billing_drift/firing"; got != want {
		t.Fatalf("notifications = %q, want %q", got, want)
	}
	hook.mu.Lock()
	first := hook.got[0]["alerts"].([]any)[0].(map[string]any)
	hook.mu.Unlock()
	wantSummary := fmt.Sprintf("openai billed 112.00 USD, tokenmeter metered 100.00 USD over 2 complete days %s to %s: +12.00 USD (10.7%% of the bill), beyond 5.000%%",
		today.AddDate(0, 0, -7).Format(time.DateOnly), d1.Format(time.DateOnly))
	if got := first["annotations"].(map[string]any)["summary"]; got != wantSummary {
		t.Errorf("summary = %q\nwant      %q", got, wantSummary)
	}
	if got := first["labels"].(map[string]any)["provider"]; got != "openai" {
		t.Errorf("provider label = %v", got)
	}

	// A corrected bill for the second day ($40, not $46): $106 against $100 is still 5.7 %.
	// Then the first day's too ($60): level.
	billed(d1, "openai", "openai", "gpt-4o", "40", 2)
	billed(d1, "openai", "openai", "mystery-1", "30", 2)
	imported(d1, "openai", 2, 1)
	billed(d2, "openai", "openai", "gpt-4o", "60", 2)
	imported(d2, "openai", 2, 1)
	if err := a.RefreshDrift(ctx); err != nil {
		t.Fatal(err)
	}
	for s := 5; s <= 3600+10; s += 300 {
		e.tickAt(a, now.Add(time.Duration(s)*time.Second))
	}
	e.tickAt(a, now.Add(3600*time.Second+20*time.Second))
	if got, want := strings.Join(hook.statuses(), "; "), "firing billing_drift/firing; resolved billing_drift/resolved"; got != want {
		t.Fatalf("notifications = %q, want %q", got, want)
	}
}
