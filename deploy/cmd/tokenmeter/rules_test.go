package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

func TestRulesValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(`
builtins: {untagged_share: false}
rules:
  - {name: burst, kind: threshold, group_by: [team], window: 5m, above: "10", severity: page}
  - {name: agents, kind: runaway, factor: "5", min_usd: "10", window: 6h, days: 7, min_workflows: 3, cap: true}
budgets:
  - {name: search, scope: {team: search}, limit_usd: "1000.5", hard_cap_percent: 100}
receivers:
  - {name: oncall, slack: {url: "https://hooks.slack.com/services/x"}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("rules:\n  - {name: burst, kind: threshold, window: 5q}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runRules([]string{"validate", good}); err != nil {
		t.Errorf("good file: %v", err)
	}
	err := runRules([]string{"validate", good, bad})
	if err == nil || !strings.Contains(err.Error(), `bad.yaml: rules[0] "burst": window: "5q" is not a duration`) ||
		!strings.Contains(err.Error(), `bad.yaml: rules[0] "burst": above: missing`) {
		t.Errorf("bad file: %v", err)
	}
	if err := runRules([]string{"check", good}); err == nil {
		t.Error("unknown subcommand accepted")
	}
	data, _ := os.ReadFile(good)
	f, err := rules.Parse("good.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := "good.yaml: 6 rules, 1 budgets, 1 receivers, 0 silences, 0 inhibit rules\n" +
		"  rule burst: threshold of cost by team, for 0s, keep firing 5m0s, severity page\n" +
		"  rule unpriced_model: threshold of unpriced_events by provider,model, for 0s, keep firing 10m0s, severity warning\n" +
		"  rule team_spike: change of cost by team, for 0s, keep firing 5m0s, severity page\n" +
		"  rule tier_fallback: threshold of tier_fallback_events by provider,model, for 0s, keep firing 10m0s, severity warning\n" +
		"  rule agents: runaway of workflow cost over 6h0m0s, above 5x the 7-day baseline and 10.00 USD, caps the workflow, severity warning\n" +
		"  rule billing_drift: bills against the meter over 7 days, above 5% and 10.00 USD, severity warning\n" +
		"  budget search: team=search, monthly, limit 1000.50 USD, soft caps [80 100]%, hard cap 100% (refuse)\n" +
		"  receiver oncall: slack\n" +
		"ok\n"
	if got := describeRules("good.yaml", f); got != want {
		t.Errorf("describeRules:\n%s\nwant:\n%s", got, want)
	}
}
