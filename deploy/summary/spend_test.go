package summary_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// asJSON renders v compactly, so that whole results compare as one exact string.
func asJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestSpendQueries(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	ctx := context.Background()
	now := summarytest.Now()
	mtd := summary.Range{From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: summary.Day(now)}

	check := func(name string, got any, err error, want string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g := asJSON(t, got); g != want {
			t.Errorf("%s:\n got %s\nwant %s", name, g, want)
		}
	}

	lines, err := summary.Breakdown(ctx, conn, db, "team", summary.Days(now, 1), nil, 10)
	check("today by team", lines, err,
		`[{"key":"support","events":1,"cost_usd":"2.25","unpriced_events":0},{"key":"search","events":2,"cost_usd":"1.75","unpriced_events":0}]`)
	lines, err = summary.Breakdown(ctx, conn, db, "team", mtd, nil, 10)
	check("month to date by team", lines, err,
		`[{"key":"support","events":3,"cost_usd":"6.250000000001","unpriced_events":0},{"key":"search","events":5,"cost_usd":"3.5","unpriced_events":1},{"key":"(untagged)","events":1,"cost_usd":"0.5","unpriced_events":0}]`)
	lines, err = summary.Breakdown(ctx, conn, db, "model", mtd, nil, 2)
	check("month to date by model, top 2", lines, err,
		`[{"key":"anthropic/claude-sonnet-4-5","events":3,"cost_usd":"6.250000000001","unpriced_events":0},{"key":"openai/gpt-4o","events":5,"cost_usd":"4","unpriced_events":0}]`)
	lines, err = summary.Breakdown(ctx, conn, db, "model", mtd, summary.Filter{"team": "search"}, 10)
	check("by model for team search", lines, err,
		`[{"key":"openai/gpt-4o","events":4,"cost_usd":"3.5","unpriced_events":0},{"key":"acme/acme-llm-7","events":1,"cost_usd":"0","unpriced_events":1}]`)
	lines, err = summary.Breakdown(ctx, conn, db, "env", mtd, summary.Filter{"team": "(untagged)", "model": "openai/gpt-4o"}, 10)
	check("by env for untagged gpt-4o", lines, err, `[{"key":"dev","events":1,"cost_usd":"0.5","unpriced_events":0}]`)
	lines, err = summary.Breakdown(ctx, conn, db, "team", mtd, summary.Filter{"team": "nobody' OR 1=1 --"}, 10)
	check("a hostile filter value matches nothing", lines, err, `[]`)

	lines, err = summary.Breakdown(ctx, conn, db, "tag.region", summary.Days(now, 7), nil, 10)
	check("7 days by the tag region", lines, err,
		`[{"key":"us","events":1,"cost_usd":"2.25","unpriced_events":0},{"key":"eu","events":2,"cost_usd":"1.75","unpriced_events":0},{"key":"(untagged)","events":3,"cost_usd":"1.25","unpriced_events":1}]`)
	lines, err = summary.Breakdown(ctx, conn, db, "tag.region", summary.Days(now, 7), summary.Filter{"team": "search", "model": "acme/acme-llm-7"}, 10)
	check("7 days by the tag region, acme for team search", lines, err, `[{"key":"(untagged)","events":1,"cost_usd":"0","unpriced_events":1}]`)
	lines, err = summary.Breakdown(ctx, conn, db, "tag.tier", summary.Days(now, 1), nil, 1)
	check("today by the tag tier, top 1", lines, err, `[{"key":"(untagged)","events":2,"cost_usd":"3.75","unpriced_events":0}]`)

	daily, err := summary.ByDay(ctx, conn, db, "total", summary.Days(now, 7), nil, 10)
	check("trailing 7 days", daily, err,
		`{"days":["2026-11-14","2026-11-15","2026-11-16","2026-11-17","2026-11-18","2026-11-19","2026-11-20"],`+
			`"series":[{"key":"total","cost_usd":["0","0","0.5","0","0","0.75","4"],"total_usd":"5.25"}]}`)
	daily, err = summary.ByDay(ctx, conn, db, "model", summary.Days(now, 3), nil, 1)
	check("3 days by model, the rest folded", daily, err,
		`{"days":["2026-11-18","2026-11-19","2026-11-20"],`+
			`"series":[{"key":"openai/gpt-4o","cost_usd":["0","0.75","1.75"],"total_usd":"2.5"},{"key":"(other)","cost_usd":["0","0","2.25"],"total_usd":"2.25"}]}`)

	movers, err := summary.Movers(ctx, conn, db, "team", now, 7, nil, 10)
	check("movers by team", movers, err,
		`[{"key":"support","current_usd":"2.25","previous_usd":"4","delta_usd":"-1.75","change_pct":"-43.8"},`+
			`{"key":"search","current_usd":"2.5","previous_usd":"1","delta_usd":"1.5","change_pct":"150.0"},`+
			`{"key":"(untagged)","current_usd":"0.5","previous_usd":"0","delta_usd":"0.5","change_pct":""}]`)
	movers, err = summary.Movers(ctx, conn, db, "model", now, 7, summary.Filter{"team": "support"}, 1)
	check("movers by model for support, top 1", movers, err,
		`[{"key":"anthropic/claude-sonnet-4-5","current_usd":"2.25","previous_usd":"4","delta_usd":"-1.75","change_pct":"-43.8"}]`)

	unpriced, err := summary.Unpriced(ctx, conn, db, mtd, nil)
	check("unpriced", unpriced, err, `[{"provider":"acme","model":"acme-llm-7","events":1,"first_day":"2026-11-18","last_day":"2026-11-18"}]`)
	unpriced, err = summary.Unpriced(ctx, conn, db, mtd, summary.Filter{"team": "support"})
	check("unpriced for support", unpriced, err, `[]`)

	cov, err := summary.CoverageOf(ctx, conn, db, mtd, nil)
	check("coverage", cov, err,
		`{"events":9,"cost_usd":"10.250000000001","attributed_usd":"9.750000000001","share_pct":"95.1","tags":[`+
			`{"tag":"team","tagged_events":8,"tagged_usd":"9.750000000001","share_pct":"95.1"},`+
			`{"tag":"feature","tagged_events":7,"tagged_usd":"9.750000000001","share_pct":"95.1"},`+
			`{"tag":"env","tagged_events":8,"tagged_usd":"10.250000000001","share_pct":"100.0"},`+
			`{"tag":"cost_center","tagged_events":7,"tagged_usd":"9.750000000001","share_pct":"95.1"}],"by_team":[`+
			`{"team":"support","cost_usd":"6.250000000001","attributed_usd":"6.250000000001","share_pct":"100.0"},`+
			`{"team":"search","cost_usd":"3.5","attributed_usd":"3.5","share_pct":"100.0"},`+
			`{"team":"(untagged)","cost_usd":"0.5","attributed_usd":"0","share_pct":"0.0"}]}`)
	cov, err = summary.CoverageOf(ctx, conn, db, summary.Days(now.AddDate(1, 0, 0), 1), nil)
	check("coverage of an empty day", cov, err,
		`{"events":0,"cost_usd":"0","attributed_usd":"0","share_pct":"","tags":[`+
			`{"tag":"team","tagged_events":0,"tagged_usd":"0","share_pct":""},{"tag":"feature","tagged_events":0,"tagged_usd":"0","share_pct":""},`+
			`{"tag":"env","tagged_events":0,"tagged_usd":"0","share_pct":""},{"tag":"cost_center","tagged_events":0,"tagged_usd":"0","share_pct":""}],"by_team":[]}`)
}

func TestSpendQueriesRejectUnknownDimensions(t *testing.T) {
	conn := chtest.Conn(t)
	ctx := context.Background()
	r := summary.Days(summarytest.Now(), 7)
	if _, err := summary.Breakdown(ctx, conn, "tokenmeter", "colour", r, nil, 10); err == nil || !strings.Contains(err.Error(), `unknown dimension "colour"`) {
		t.Errorf("by colour: err = %v", err)
	}
	for _, by := range []string{"tag.", "tag.Region", "tag.a'b", "tag." + strings.Repeat("a", 65)} {
		if _, err := summary.Breakdown(ctx, conn, "tokenmeter", by, r, nil, 10); err == nil || !strings.Contains(err.Error(), "want 1 to 64 of a-z, 0-9, '_', '.', '-'") {
			t.Errorf("by %q: err = %v", by, err)
		}
	}
	_, err := summary.ByDay(ctx, conn, "tokenmeter", "team", r, summary.Filter{"1=1 --": "x", "total": "y"}, 10)
	if err == nil || !strings.Contains(err.Error(), `filter: unknown dimension "1=1 --"`) || !strings.Contains(err.Error(), `filter: unknown dimension "total"`) {
		t.Errorf("bad filter keys: err = %v, want both named", err)
	}
}

func TestRangeValidate(t *testing.T) {
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, c := range []struct {
		from, to, want string
	}{
		{"2026-11-01", "2026-11-01", ""},
		{"2026-11-02", "2026-11-01", "range 2026-11-02..2026-11-01 ends before it starts"},
		{"2020-01-01", "2026-11-01", "range 2020-01-01..2026-11-01 spans more than 3 years"},
	} {
		err := summary.Range{From: day(c.from), To: day(c.to)}.Validate()
		if got := errString(err); got != c.want {
			t.Errorf("%s..%s: %q, want %q", c.from, c.to, got, c.want)
		}
	}
	if r := summary.Days(time.Date(2026, 3, 2, 23, 0, 0, 0, time.UTC), 3); r.From.Format(time.DateOnly) != "2026-02-28" || r.To.Format(time.DateOnly) != "2026-03-02" {
		t.Errorf("Days = %v", r)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestPercent(t *testing.T) {
	f := func(part, whole, want string) {
		t.Helper()
		if got := summary.Percent(dec(part), dec(whole)); got != want {
			t.Errorf("Percent(%s, %s) = %q, want %q", part, whole, got, want)
		}
	}
	f("1", "3", "33.3")
	f("2", "3", "66.7")
	f("-7", "4", "-175.0")
	f("1", "0", "")
	f("0.000000000001", "1000000", "0.0")
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }
