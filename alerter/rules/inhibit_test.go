package rules

import (
	"fmt"
	"testing"
)

func TestParseInhibitRules(t *testing.T) {
	f, err := parseFile(t, "inhibit.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := fmt.Sprint(f.InhibitRules), `[{[alertname=~"budget_soft_cap|budget_forecast"] [alertname="team_spike"] [team]} `+
		`{[severity="critical"] [severity!="critical" alertname!~"budget_.*"] [alertname team]}]`; got != want {
		t.Fatalf("inhibit rules = %s\nwant %s", got, want)
	}
	budget, spike := f.InhibitRules[0], f.InhibitRules[1]
	labels := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	softCap := labels("alertname", "budget_soft_cap", "budget", "search-monthly", "team", "search", "threshold", "80%")
	for _, c := range []struct {
		name           string
		r              InhibitRule
		source, target map[string]string
		want           bool
	}{
		{"budget quiets the same team's spike", budget, softCap, labels("alertname", "team_spike", "team", "search"), true},
		{"forecast too (regexp)", budget, labels("alertname", "budget_forecast", "team", "search"), labels("alertname", "team_spike", "team", "search"), true},
		{"another team's spike", budget, softCap, labels("alertname", "team_spike", "team", "support"), false},
		{"not a spike", budget, softCap, labels("alertname", "team-hourly", "team", "search"), false},
		{"equal label missing on both sides counts as equal", budget,
			labels("alertname", "budget_soft_cap", "feature", "chat"), labels("alertname", "team_spike"), true},
		{"critical quiets the warning", spike, labels("alertname", "hot", "team", "a", "severity", "critical"),
			labels("alertname", "hot", "team", "a", "severity", "warning"), true},
		{"but not a budget alert (!~)", spike, labels("alertname", "budget_soft_cap", "team", "a", "severity", "critical"),
			labels("alertname", "budget_soft_cap", "team", "a", "severity", "warning"), false},
		{"a source that matches both sides does not mute a target that does", InhibitRule{
			SourceMatchers: Matchers{mustMatcher(t, `alertname="x"`)}, TargetMatchers: Matchers{mustMatcher(t, `alertname=~"x|y"`)}},
			labels("alertname", "x", "team", "a"), labels("alertname", "x", "team", "b"), false},
	} {
		if got := c.r.Inhibits(c.source, c.target); got != c.want {
			t.Errorf("%s: Inhibits = %v, want %v", c.name, got, c.want)
		}
	}
}

func mustMatcher(t *testing.T, s string) Matcher {
	t.Helper()
	m, err := parseMatcher(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseRefusesBadInhibitRules(t *testing.T) {
	for file, want := range map[string]string{
		"conf.inhibit-bad-matcher.yaml": `conf.inhibit-bad-matcher.yaml: inhibit_rules[0]: source_matchers: "alertname ~ budget_soft_cap" is not a matcher (want name="value", with =, !=, =~ or !~)`,
		"conf.inhibit-bad-regexp.yaml":  "conf.inhibit-bad-regexp.yaml: inhibit_rules[0]: target_matchers: \"team=~\\\"(search\\\"\": error parsing regexp: missing closing ): `^(?:(search)$`",
		"conf.inhibit-bad-quote.yaml":   `conf.inhibit-bad-quote.yaml: inhibit_rules[0]: source_matchers: "alertname=\"budget_soft_cap": the value "budget_soft_cap is not a valid quoted string`,
		"conf.inhibit-no-target.yaml":   `conf.inhibit-no-target.yaml: inhibit_rules[0]: target_matchers: missing (an inhibit rule must say which alerts it is about)`,
		"conf.inhibit-bad-equal.yaml":   `conf.inhibit-bad-equal.yaml: inhibit_rules[0]: equal: "cost center" is not a label name`,
	} {
		_, err := parseFile(t, file)
		if err == nil || err.Error() != want {
			t.Errorf("%s: err = %v\nwant %s", file, err, want)
		}
	}
}
