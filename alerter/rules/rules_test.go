package rules

import (
	"os"
	"strings"
	"testing"
	"time"
)

func parseFile(t *testing.T, name string) (*File, error) {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(name, data)
}

func TestParseGoodFile(t *testing.T) {
	f, err := parseFile(t, "good.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var names []string
	for _, r := range f.Rules {
		names = append(names, r.Name)
	}
	if got, want := strings.Join(names, ","), "search-hourly,daily-tokens,spike,creep,seasonal,unpriced_model,team_spike,tier_fallback"; got != want {
		t.Errorf("rules = %s, want %s (untagged_share turned off, the others built in)", got, want)
	}
	r := f.Rules[0]
	if r.Kind != Threshold || r.Measure != Cost || r.Window != time.Hour || r.Above != 100_500_000_000_000 ||
		r.For != 5*time.Minute || r.KeepFiringFor != 10*time.Minute || r.ResolvePercent != 80 || r.Severity != "page" ||
		r.Labels["owner"] != "finops" || r.ForSteps() != 5 {
		t.Errorf("search-hourly = %+v", r)
	}
	if d := f.Rules[1]; !d.CalendarDay || d.Above != 1_000_000 || d.Measure != OutputTokens || d.Severity != "warning" || d.KeepFiringFor != 5*time.Minute {
		t.Errorf("daily-tokens = %+v", d)
	}
	if s := f.Rules[2]; s.Window != 2*time.Hour || s.Period != 24*time.Hour || s.Periods != 7 || s.MinPeriods != 3 ||
		s.FactorMilli != 2500 || s.ScoreMilli != 3500 || s.MinValue != 5*PicoPerUSD || s.MinShareMilli != 1500 {
		t.Errorf("spike = %+v", s)
	}
	if c := f.Rules[3]; c.GrowthMilli != 30_000 || c.For != 72*time.Hour || c.ForSteps() != 3 || c.Step() != 24*time.Hour {
		t.Errorf("creep = %+v", c)
	}
	if a := f.Rules[4]; a.Days != 21 || a.MinHistory != 3 || a.FactorMilli != 1500 || a.ScoreMilli != 4000 || a.Step() != time.Hour {
		t.Errorf("seasonal = %+v", a)
	}
	b := f.Budgets[0]
	if b.Scope() != "team=search" || b.Period != Monthly || b.LimitPico != 1000*PicoPerUSD || b.HardCapPercent != 120 ||
		b.Policy != PolicyFlag || len(b.AlertAtPercent) != 3 {
		t.Errorf("budget 0 = %+v", b)
	}
	b = f.Budgets[1]
	if b.Scope() != "cost_center=ml" || b.Period != Custom || b.PeriodDays != 90 || !b.PeriodStart.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		b.LimitPico != 25_000_250_000_000_000 || b.Policy != PolicyRefuse || b.HardCapPercent != 0 || len(b.AlertAtPercent) != 2 {
		t.Errorf("budget 1 = %+v", b)
	}
	if f.Route.GroupWait != 10*time.Second || f.Route.GroupInterval != 2*time.Minute || f.Route.RepeatInterval != time.Hour ||
		strings.Join(f.Route.GroupBy, ",") != "alertname,team" {
		t.Errorf("route = %+v", f.Route)
	}
	if len(f.Receivers) != 4 || f.Receivers[2].PagerDuty.URL != DefaultPagerDutyURL || f.Receivers[3].Alertmanager.URL != "http://alertmanager:9093" ||
		f.Receivers[1].Slack.Channel != "#spend" || !f.Receivers[2].Matches(map[string]string{"severity": "page"}) || f.Receivers[2].Matches(map[string]string{"severity": "warning"}) {
		t.Errorf("receivers = %+v", f.Receivers)
	}
	s := f.Silences[0]
	if !s.EndsAt.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || !s.Matches(map[string]string{"team": "sandbox", "x": "y"}) || s.Matches(map[string]string{"team": "search"}) {
		t.Errorf("silence = %+v", s)
	}
}

func TestParseEmptyIsBuiltins(t *testing.T) {
	f, err := Parse("empty", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Rules) != 4 || f.Rules[0].Name != BuiltinUnpricedModel || f.Rules[1].Name != BuiltinUntaggedShare || f.Rules[2].Name != BuiltinTeamSpike ||
		f.Rules[3].Name != BuiltinTierFallback {
		t.Errorf("rules = %+v, want the four built-ins", f.Rules)
	}
	if f.Route.GroupWait != DefaultGroupWait || f.Route.GroupInterval != DefaultGroupInterval || f.Route.RepeatInterval != DefaultRepeatInterval ||
		len(f.Route.GroupBy) != 1 || f.Route.GroupBy[0] != "alertname" {
		t.Errorf("route = %+v", f.Route)
	}
	if d := f.BillingDrift; d == nil || *d != (BillingDrift{AboveMilli: 5_000, MinPico: 10 * PicoPerUSD, Days: 7, Severity: "warning"}) {
		t.Errorf("billing_drift = %+v, want the defaults (on)", d)
	}
	if f, err := Parse("off", []byte("builtins: {billing_drift: false}")); err != nil || f.BillingDrift != nil {
		t.Errorf("billing_drift turned off: %+v, %v", f.BillingDrift, err)
	}
	if _, err := Parse("off", []byte("builtins: {billing_drift: false}\nbilling_drift: {days: 3}")); err == nil ||
		err.Error() != "off: billing_drift: set, but builtins turns billing_drift off" {
		t.Errorf("billing_drift set and off: %v", err)
	}
}

func TestParseReportsEveryMistake(t *testing.T) {
	_, err := parseFile(t, "conf.every-mistake.yaml")
	if err == nil {
		t.Fatal("Parse accepted a broken file")
	}
	want := []string{
		`conf.every-mistake.yaml: builtins: "team_spke" is not a built-in rule`,
		`billing_drift: min_usd: "x" is not a plain decimal number`,
		`billing_drift: days: 400 is outside [1, 90]`,
		`billing_drift: above_percent: 0 is outside (0, 100]`,
		`rules[0] "Bad Name": name: "Bad Name" must match`,
		`rules[0] "Bad Name": measure: "dollars" is not one of cost, untagged_cost`,
		`rules[0] "Bad Name": group_by: "tag.owner" is not one of team, feature`,
		`rules[0] "Bad Name": group_by: "team" is listed twice`,
		`rules[0] "Bad Name": window: "90x" is not a duration`,
		`rules[0] "Bad Name": above: "1.5x" is not a plain decimal number`,
		`rules[0] "Bad Name": resolve_percent: 0 is outside [1, 100]`,
		`rules[1] "spike": above: not a field of a change rule`,
		`rules[1] "spike": window: 1h30m0s is longer than an hour but not a whole number of hours`,
		`rules[1] "spike": periods: 20 is outside [1, 12]`,
		`rules[1] "spike": factor: 0.5 is below 1`,
		`rules[2] "spike": for: 36h0m0s must be whole days`,
		`rules[2]: name "spike" is used twice`,
		`rules[3] "a": days: 50 is outside [7, 35]`,
		`rules[4] "b": kind: missing`,
		`budgets[0] "nobody": scope: want exactly one of team, feature or cost_center`,
		`budgets[0] "nobody": period: "weekly" is not monthly or custom`,
		`budgets[0] "nobody": limit_usd: must be above 0`,
		`budgets[0] "nobody": alert_at_percent: [80 50] is not strictly increasing`,
		`budgets[0] "nobody": policy: "shout" is not refuse or flag`,
		`route: group_wait: "forever" is not a duration`,
		`receivers[0] "two": webhook.url: "ftp://x/…" is not an http(s) URL`,
		`receivers[0] "two": want exactly one of webhook, slack, pagerduty or alertmanager, got 2`,
		`receivers[1] "pd": pagerduty.routing_key: want the 32-character integration key, got 5 characters`,
		`silences[0]: matchers: missing`,
		`silences[0]: ends_at: "tomorrow" is not an RFC 3339 time`,
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("error:\n%s", msg)
	}
}

func TestParseRefusesUnknownFieldsAndBadYAML(t *testing.T) {
	_, err := parseFile(t, "conf.unknown-field.yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown field "treshold"`) {
		t.Errorf("unknown field: err = %v", err)
	}
	for _, doc := range []string{"rules: [", "rules: 5", "\x00\x01", "rules:\n  - name: [x]\n", strings.Repeat("a", MaxFileBytes+1)} {
		if _, err := Parse("f", []byte(doc)); err == nil {
			t.Errorf("Parse(%.20q) accepted it", doc)
		}
	}
}

func TestParseDecimal(t *testing.T) {
	f := func(s string, scale int, want int64, wantErr string) {
		t.Helper()
		got, err := parseDecimal(s, scale)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("parseDecimal(%q, %d) error = %v, want %q", s, scale, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("parseDecimal(%q, %d) = %d, %v; want %d", s, scale, got, err, want)
		}
	}
	f("0", 12, 0, "")
	f("1", 12, PicoPerUSD, "")
	f("0.000000000001", 12, 1, "")
	f("1000.25", 12, 1_000_250_000_000_000, "")
	f("9000000", 12, 9_000_000*PicoPerUSD, "")
	f("9000001", 12, 0, "too large")
	f("99999999999999999999999", 0, 0, "too large")
	f("2.5", 3, 2500, "")
	f("2.5", 0, 0, "more than 0 decimals")
	f("0.0000000000001", 12, 0, "more than 12 decimals")
	f("-1", 12, 0, "not a plain decimal")
	f("1e3", 12, 0, "not a plain decimal")
	f("1.", 12, 0, "not a plain decimal")
	f(".5", 12, 0, "not a plain decimal")
	f(" 1", 12, 0, "not a plain decimal")
	f("", 12, 0, "not a plain decimal")
}

func TestFormatAndMulDiv(t *testing.T) {
	for _, c := range []struct {
		pico int64
		want string
	}{{0, "0.00"}, {1, "0.000000000001"}, {1_500_000_000_000, "1.50"}, {152_300_000_000_000, "152.30"}, {-2 * PicoPerUSD, "-2.00"}, {123_456_789_012_345, "123.456789012345"}} {
		if got := FormatUSD(c.pico); got != c.want {
			t.Errorf("FormatUSD(%d) = %s, want %s", c.pico, got, c.want)
		}
	}
	if got := FormatMilli(2500); got != "2.5" {
		t.Errorf("FormatMilli(2500) = %s", got)
	}
	if got, err := MulDiv(9_000_000*PicoPerUSD, 1_000_000, 1_000_000); err != nil || got != 9_000_000*PicoPerUSD {
		t.Errorf("MulDiv large = %d, %v: the 128-bit intermediate must not overflow", got, err)
	}
	if got, err := MulDiv(7, 3, 2); err != nil || got != 10 {
		t.Errorf("MulDiv(7,3,2) = %d, %v; want 10 (rounded down)", got, err)
	}
	if _, err := MulDiv(1<<62, 8, 1); err != ErrOverflow {
		t.Errorf("MulDiv overflow err = %v", err)
	}
	if _, err := MulDiv(-1, 1, 1); err == nil {
		t.Error("MulDiv accepted a negative operand")
	}
}
