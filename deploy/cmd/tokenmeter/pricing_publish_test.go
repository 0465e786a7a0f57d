package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// queryRows runs sql, whose columns must all be strings (wrap others in toString), and
// returns its rows as tab-separated lines.
func queryRows(t *testing.T, conn driver.Conn, sql string) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var b strings.Builder
	cells := make([]string, len(rows.Columns()))
	ptrs := make([]any, len(cells))
	for i := range cells {
		ptrs[i] = &cells[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		b.WriteString(strings.Join(cells, "\t") + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return b.String()
}

// The view's rule for an event's price row (migration 0085) applied to the enricher's price
// versions gives back the row's key, for every row of the shipped catalogue: the join of
// price_staleness holds.
func TestPriceRowKeys(t *testing.T) {
	cat, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	files, err := pricing.DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	rows := catalogueRows(files)
	if len(rows) < 400 {
		t.Fatalf("%d price rows in the shipped catalogue, want at least 400", len(rows))
	}
	viewRule := regexp.MustCompile(`^(.*@[0-9]{4}-[0-9]{2}-[0-9]{2})/`)
	for _, r := range rows {
		for _, tier := range []string{"", event.TierBatch} {
			q := cat.Price(r.provider, r.model, tier, r.effective, event.Tokens{Input: 300_000, Output: 10}, false)
			m := viewRule.FindStringSubmatch(q.Version)
			if !q.Priced || m == nil || m[1] != r.key {
				t.Errorf("%s priced at %s in tier %q: version %q (priced %v), the view would read row %q", r.key,
					r.effective.Format(time.DateOnly), tier, q.Version, q.Priced, m)
			}
		}
	}
}

// "pricing publish" writes the catalogue's rows once; publishing it again writes nothing; a
// changed check window is a new publish, and a publish whose rows are not all present does
// not count.
func TestPricingPublish(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	dir := "testdata/pricing"
	cat, err := pricing.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := func(min int) time.Time { return time.Date(2026, 12, 6, 5, min, 0, 0, time.UTC) }
	publish := func(now time.Time, want string, args ...string) {
		t.Helper()
		var out bytes.Buffer
		args = append([]string{"-pricing", dir, "-clickhouse", chtest.DSN(), "-database", db}, args...)
		if err := pricingPublish(&out, func() time.Time { return now }, args); err != nil {
			t.Fatalf("publish %v: %v", args, err)
		}
		if got := out.String(); got != want {
			t.Errorf("publish %v:\n got %q\nwant %q", args, got, want)
		}
	}
	table := func(want string) {
		t.Helper()
		got := queryRows(t, conn, "SELECT toString(publish_version), toString(count()), toString(min(check_window_days)) FROM "+db+".price_rows GROUP BY publish_version ORDER BY publish_version")
		if got != want {
			t.Errorf("price_rows per publish:\n got %s\nwant %s", got, want)
		}
	}
	v1, v3 := at(0).UnixNano(), at(2).UnixNano()
	publish(at(0), fmt.Sprintf("published 6 price rows of catalogue %s (check window 90 days) as publish %d\n", cat.Version(), v1))
	table(fmt.Sprintf("%d\t6\t90\n", v1))
	if got, want := queryRows(t, conn, "SELECT price_row, provider, model, toString(effective), toString(checked), arrayStringConcat(refs, ','), catalog_version, toString(published_at), toString(publish_rows) FROM "+
		db+".price_rows ORDER BY provider, model, effective"), ""+
		"anthropic/claude-3-haiku@2024-03-13\tanthropic\tclaude-3-haiku\t2024-03-13\t2026-12-06\tlitellm,genai-prices\t"+cat.Version()+"\t2026-12-06 05:00:00\t6\n"+
		"anthropic/claude-sonnet-4-5@2025-09-29\tanthropic\tclaude-sonnet-4-5\t2025-09-29\t2026-12-06\tlitellm,genai-prices\t"+cat.Version()+"\t2026-12-06 05:00:00\t6\n"+
		"openai/gpt-4o@2024-05-13\topenai\tgpt-4o\t2024-05-13\t2026-12-06\tgenai-prices\t"+cat.Version()+"\t2026-12-06 05:00:00\t6\n"+
		"openai/gpt-4o@2024-10-01\topenai\tgpt-4o\t2024-10-01\t2026-12-06\tlitellm,genai-prices\t"+cat.Version()+"\t2026-12-06 05:00:00\t6\n"+
		"openai/gpt-4o-mini@2024-07-18\topenai\tgpt-4o-mini\t2024-07-18\t2026-12-06\tlitellm,genai-prices\t"+cat.Version()+"\t2026-12-06 05:00:00\t6\n"+
		"openai/text-embedding-3-small@2024-01-25\topenai\ttext-embedding-3-small\t2024-01-25\t0000-00-00\t\t"+cat.Version()+"\t2026-12-06 05:00:00\t6\n"; got != want {
		t.Errorf("price_rows:\n got %s\nwant %s", got, want)
	}

	// The same catalogue again, a minute later: nothing written.
	publish(at(1), fmt.Sprintf("unchanged: the 6 price rows of catalogue %s (check window 90 days) are published already (publish %d)\n", cat.Version(), v1))
	table(fmt.Sprintf("%d\t6\t90\n", v1))

	// Another window is another publish; the view shows only it.
	publish(at(2), fmt.Sprintf("published 6 price rows of catalogue %s (check window 30 days) as publish %d\n", cat.Version(), v3), "-check-window", "30")
	view := func(want string) {
		t.Helper()
		if got := queryRows(t, conn, "SELECT toString(count()), toString(min(check_window_days)), toString(max(check_window_days)) FROM "+db+".price_staleness"); got != want {
			t.Errorf("price_staleness: rows, least and greatest window:\n got %s\nwant %s", got, want)
		}
	}
	view("6\t30\t30\n")

	// One row of a later publish of six: it does not count, so the view stays on v3 and
	// publishing v3's content again writes nothing.
	torn, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".price_rows (publish_version, publish_rows, content_hash, price_row, check_window_days)")
	if err != nil {
		t.Fatal(err)
	}
	if err := torn.Append(uint64(v3+5), uint32(6), "torn", "x/y@2026-01-01", uint16(7)); err != nil {
		t.Fatal(err)
	}
	if err := torn.Send(); err != nil {
		t.Fatal(err)
	}
	view("6\t30\t30\n")
	publish(at(3), fmt.Sprintf("unchanged: the 6 price rows of catalogue %s (check window 30 days) are published already (publish %d)\n", cat.Version(), v3), "-check-window", "30")

	// A clock behind the versions stored: the new version moves past the highest.
	publish(at(0), fmt.Sprintf("published 6 price rows of catalogue %s (check window 90 days) as publish %d\n", cat.Version(), v3+6))
	table(fmt.Sprintf("%d\t6\t90\n%d\t6\t30\n%d\t1\t7\n%d\t6\t90\n", v1, v3, v3+5, v3+6))
	view("6\t90\t90\n")

	var out bytes.Buffer
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-check-window", "0"}, `-check-window "0": want a number of days from 1 to 65535`},
		{[]string{"-check-window", "70000"}, `-check-window "70000": want a number of days from 1 to 65535`},
		{[]string{"extra"}, pricingPublishUsage},
	} {
		if err := pricingPublish(&out, time.Now, tt.args); err == nil || err.Error() != tt.want {
			t.Errorf("publish %v: error %v, want %q", tt.args, err, tt.want)
		}
	}
}

// publishPricesAtStart publishes once the migrations are there, and gives up with a warning
// when they never are.
func TestPublishPricesAtStart(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	publishPricesAtStart(ctx, log, chtest.DSN(), db, "testdata/pricing", time.Millisecond, 2)
	if got := logs.String(); !strings.HasPrefix(got, `level=WARN msg="price rows not published (price_staleness shows the last publish; run tokenmeter pricing publish)" tries=2 err=`) ||
		strings.Count(got, "\n") != 1 {
		t.Errorf("logs without migrations:\n%s", got)
	}
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	publishPricesAtStart(ctx, log, chtest.DSN(), db, "testdata/pricing", time.Millisecond, 2)
	cat, err := pricing.LoadDir("testdata/pricing")
	if err != nil {
		t.Fatal(err)
	}
	version := chtest.String(t, conn, "SELECT toString(max(publish_version)) FROM "+db+".price_rows")
	if got, want := logs.String(), fmt.Sprintf("level=INFO msg=\"price rows published\" rows=6 catalogue=%s written=true publish=%s\n", cat.Version(), version); got != want {
		t.Errorf("logs:\n got %s\nwant %s", got, want)
	}
	if got := chtest.String(t, conn, "SELECT toString(count()) FROM "+db+".price_staleness"); got != "6" {
		t.Errorf("price_staleness holds %s rows, want 6", got)
	}
}

// price_staleness weighs every row of the latest publish by the spend of the last 30 days
// priced with it, re-rated spend under the row it was re-rated with; "pricing stale" prints
// it and fails above -max-share.
func TestPricingStale(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	todayText := chtest.String(t, conn, "SELECT toString(today())")
	today, err := time.Parse(time.DateOnly, todayText)
	if err != nil {
		t.Fatal(err)
	}
	ago := func(days int) time.Time { return today.AddDate(0, 0, -days) }
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	row := func(provider, model, effective string, checked time.Time, refs ...string) priceRow {
		return priceRow{key: provider + "/" + model + "@" + effective, provider: provider, model: model, effective: day(effective), checked: checked, refs: refs}
	}
	p := publication{catalog: "cafe", windowDays: 90, rows: []priceRow{
		row("anthropic", "claude-3-haiku", "2024-03-13", ago(90), "litellm"), // on the edge: fresh
		row("anthropic", "claude-sonnet-4-5", "2025-09-29", ago(10), "litellm", "genai-prices"),
		row("google", "claude-sonnet-4-5@20250929", "2025-09-29", ago(91), "genai-prices"),
		row("openai", "gpt-4o", "2024-05-13", time.Time{}), // never checked
		row("openai", "gpt-4o", "2024-10-01", ago(100), "litellm"),
	}}
	if _, err := publishPrices(ctx, conn, db, p, time.Now()); err != nil {
		t.Fatal(err)
	}

	now := time.Now().UTC().Truncate(time.Second)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, provider, model, model_priced, priced, service_tier, price_version, cost_usd)")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		id, provider, model, version, cost string
		at                                 time.Time
	}{
		{"batch", "openai", "gpt-4o", "openai/gpt-4o@2024-10-01/batch", "3", now.Add(-time.Hour)},
		{"long", "openai", "gpt-4o", "openai/gpt-4o@2024-10-01/standard/long", "1", now.Add(-48 * time.Hour)},
		{"sonnet", "anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5@2025-09-29/standard", "2", now.Add(-5 * 24 * time.Hour)},
		{"vertex", "google", "claude-sonnet-4-5@20250929", "google/claude-sonnet-4-5@20250929@2025-09-29/standard/discount=10%@2026-01-01", "1.5", now.Add(-time.Hour)},
		{"org", "openai", "gpt-4o", "openai/gpt-4o@2024-10-01/standard/org", "0.5", now.Add(-time.Hour)},
		{"old", "openai", "gpt-4o", "openai/gpt-4o@2024-10-01/standard", "100", now.Add(-31 * 24 * time.Hour)},
		{"unpriced", "openai", "gpt-9", "", "0", now.Add(-time.Hour)},
		// Priced with the superseded row, then re-rated with the right one at half the cost.
		{"rerated", "openai", "gpt-4o", "openai/gpt-4o@2024-05-13/standard", "2", now.Add(-3 * time.Hour)},
	} {
		priced := uint8(1)
		if e.version == "" {
			priced = 0
		}
		if err := b.Append(e.id, e.at, e.provider, e.model, e.model, priced, "", e.version, decimal.RequireFromString(e.cost)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	insertRerate(t, conn, db, "cost_usd", "rerated", "openai", "gpt-4o", now.Add(-3*time.Hour),
		"openai/gpt-4o@2024-05-13/standard", "2", "openai/gpt-4o@2024-10-01/standard", "1")

	// In the window: 3 + 1 + 1 (re-rated) on gpt-4o@2024-10-01, 2 on Sonnet, 1.5 on Vertex,
	// 0.5 at the organisation's own price: 9 USD.
	never := int(today.Sub(time.Unix(0, 0).UTC()).Hours() / 24)
	got := queryRows(t, conn, "SELECT provider, model, toString(effective), toString(checked), toString(age_days), toString(check_window_days), toString(stale), "+
		"toString(spend_30d_usd), toString(spend_share), toString(total_30d_usd), arrayStringConcat(refs, ','), price_row, catalog_version FROM "+db+".price_staleness")
	want := fmt.Sprintf(""+
		"openai\tgpt-4o\t2024-10-01\t%s\t100\t90\t1\t5.000000000000\t0.555555555555\t9.000000000000\tlitellm\topenai/gpt-4o@2024-10-01\tcafe\n"+
		"google\tclaude-sonnet-4-5@20250929\t2025-09-29\t%s\t91\t90\t1\t1.500000000000\t0.166666666666\t9.000000000000\tgenai-prices\tgoogle/claude-sonnet-4-5@20250929@2025-09-29\tcafe\n"+
		"openai\tgpt-4o\t2024-05-13\t0000-00-00\t%d\t90\t1\t0.000000000000\t0.000000000000\t9.000000000000\t\topenai/gpt-4o@2024-05-13\tcafe\n"+
		"anthropic\tclaude-sonnet-4-5\t2025-09-29\t%s\t10\t90\t0\t2.000000000000\t0.222222222222\t9.000000000000\tlitellm,genai-prices\tanthropic/claude-sonnet-4-5@2025-09-29\tcafe\n"+
		"anthropic\tclaude-3-haiku\t2024-03-13\t%s\t90\t90\t0\t0.000000000000\t0.000000000000\t9.000000000000\tlitellm\tanthropic/claude-3-haiku@2024-03-13\tcafe\n",
		ago(100).Format(time.DateOnly), ago(91).Format(time.DateOnly), never, ago(10).Format(time.DateOnly), ago(90).Format(time.DateOnly))
	if got != want {
		t.Errorf("price_staleness:\n got %s\nwant %s", got, want)
	}

	stale := func(wantErr string, args ...string) string {
		t.Helper()
		var out bytes.Buffer
		err := runPricingTo(&out, append([]string{"stale", "-clickhouse", chtest.DSN(), "-database", db}, args...))
		if fmt.Sprint(err) != wantErr {
			t.Errorf("stale %v: error %v, want %s", args, err, wantErr)
		}
		return out.String()
	}
	table := fmt.Sprintf(""+
		"stale  provider   model                       effective   checked     age days  window days  spend 30d USD  share\n"+
		"STALE  openai     gpt-4o                      2024-10-01  %s  100       90           5.000000       55.56%%\n"+
		"STALE  google     claude-sonnet-4-5@20250929  2025-09-29  %s  91        90           1.500000       16.67%%\n"+
		"       anthropic  claude-sonnet-4-5           2025-09-29  %s  10        90           2.000000       22.22%%\n"+
		"3 of 5 price rows stale, 2 of them priced spend in the last 30 days: 6.500000 of 9.000000 USD (72.22%%)\n"+
		"0.500000 USD (5.56%%) priced by no published row: organisation overrides, or a catalogue other than the one published\n",
		ago(100).Format(time.DateOnly), ago(91).Format(time.DateOnly), ago(10).Format(time.DateOnly))
	if got := stale("<nil>"); got != table {
		t.Errorf("stale:\n got %s\nwant %s", got, table)
	}
	if got := stale("<nil>", "-max-share", "0.7223"); got != table {
		t.Errorf("stale -max-share 0.7223:\n got %s\nwant %s", got, table)
	}
	if got := stale("stale price rows priced 72.22% of the last 30 days' spend, more than -max-share 0.7222: check them against the references and update their checked dates",
		"-max-share", "0.7222"); got != table {
		t.Errorf("stale -max-share 0.7222:\n got %s\nwant %s", got, table)
	}
	all := stale("<nil>", "-all")
	if lines := strings.Split(all, "\n"); len(lines) != 9 ||
		lines[3] != fmt.Sprintf("STALE  openai     gpt-4o                      2024-05-13  never       %d     90           0.000000       0.00%%", never) {
		t.Errorf("stale -all:\n%s", all)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-max-share", "1.5"}, `-max-share "1.5": want a fraction from 0 to 1`},
		{[]string{"-max-share", "5%"}, `-max-share "5%": want a fraction from 0 to 1`},
		{[]string{"x"}, pricingStaleUsage},
	} {
		if err := runPricingTo(&bytes.Buffer{}, append([]string{"stale"}, tt.args...)); err == nil || err.Error() != tt.want {
			t.Errorf("stale %v: error %v, want %q", tt.args, err, tt.want)
		}
	}
	empty := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, empty); err != nil {
		t.Fatal(err)
	}
	if err := runPricingTo(&bytes.Buffer{}, []string{"stale", "-clickhouse", chtest.DSN(), "-database", empty}); err == nil ||
		err.Error() != empty+".price_staleness is empty: no catalogue was published (run tokenmeter pricing publish)" {
		t.Errorf("stale of an empty database: error %v", err)
	}
}

// cache_write_payback computes each group at the published catalogue's rates of the row and
// tier its writes were priced with, and falls back to Anthropic's multipliers for prices the
// catalogue does not publish (an organisation's own).
func TestCacheWritePaybackCatalogue(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	p, err := loadPublication("testdata/pricing", 90)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publishPrices(ctx, conn, db, p, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The rates as published, in picodollars per token.
	if got, want := queryRows(t, conn, "SELECT price_row, arrayStringConcat(rate_tiers, ','), arrayStringConcat(arrayMap(x -> toString(x), input_pusd), ','), "+
		"arrayStringConcat(arrayMap(x -> toString(x), cached_input_pusd), ','), arrayStringConcat(arrayMap(x -> toString(x), cache_write_pusd), ','), "+
		"arrayStringConcat(arrayMap(x -> toString(x), cache_write_1h_pusd), ',') FROM "+db+".price_rows WHERE model IN ('gpt-4o', 'claude-sonnet-4-5') ORDER BY price_row"), ""+
		"anthropic/claude-sonnet-4-5@2025-09-29\tstandard,batch,standard/long,batch/long\t3000000,1500000,6000000,3000000\t300000,150000,600000,300000\t3750000,1875000,7500000,3750000\t6000000,3000000,12000000,6000000\n"+
		"openai/gpt-4o@2024-05-13\tstandard\t5000000\t5000000\t5000000\t5000000\n"+
		"openai/gpt-4o@2024-10-01\tstandard,batch\t2500000,1250000\t1250000,1250000\t2500000,1250000\t2500000,1250000\n"; got != want {
		t.Errorf("price_rows rates:\n got %s\nwant %s", got, want)
	}

	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, provider, model, model_priced, priced, service_tier, prompt_version, price_version, "+
		"input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, savings_usd)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	for _, e := range []struct {
		id, provider, model, tier, prompt, version string
		in, cached, write, write1h                 uint64
		savings                                    string
	}{
		// gpt-4o: a cache write costs plain input, a read saves half: any read pays back.
		{"oa", "openai", "gpt-4o", "standard", "p1", "openai/gpt-4o@2024-10-01/standard", 3000, 2000, 1000, 0, "0.0025"},
		// Sonnet above 200k tokens: one-hour writes at 12 against input at 6, nothing read.
		{"long", "anthropic", "claude-sonnet-4-5", "standard", "p2", "anthropic/claude-sonnet-4-5@2025-09-29/standard/long", 201000, 0, 1000, 1000, "0"},
		// Sonnet in batch with a 10% discount: savings 8000 × 1.35 µ$ less 10%.
		{"batch", "anthropic", "claude-sonnet-4-5", "batch", "p3", "anthropic/claude-sonnet-4-5@2025-09-29/batch/discount=10%@2026-01-01", 12000, 8000, 4000, 4000, "0.00972"},
		// The organisation's own price: not published, Anthropic's multipliers.
		{"org", "anthropic", "claude-sonnet-4-5", "standard", "p4", "anthropic/claude-sonnet-4-5@2025-09-29/standard/org", 3000, 2000, 1000, 1000, "0.0054"},
	} {
		if err := b.Append(e.id, at, e.provider, e.model, e.model, uint8(1), e.tier, e.prompt, e.version, e.in, e.cached, e.write, e.write1h,
			decimal.RequireFromString(e.savings)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	// The batch call re-rated without the discount: its savings become 0.0108.
	insertRerate(t, conn, db, "savings_usd", "batch", "anthropic", "claude-sonnet-4-5", at,
		"anthropic/claude-sonnet-4-5@2025-09-29/batch/discount=10%@2026-01-01", "0.00972", "anthropic/claude-sonnet-4-5@2025-09-29/batch", "0.0108")
	got := queryRows(t, conn, "SELECT prompt_version, toString(cache_write_1h_tokens), toString(cache_write_5m_tokens), toString(cache_read_tokens), "+
		"toString(read_savings_usd), toString(write_1h_extra_usd), toString(write_5m_extra_usd), toString(net_savings_usd), toString(break_even_read_tokens), toString(paid_back), "+
		"toString(current_read_savings_usd), toString(current_write_1h_extra_usd), toString(current_net_savings_usd), priced_with, toString(catalogue_rates) FROM "+
		db+".cache_write_payback ORDER BY prompt_version")
	want := "" +
		// e5 = 0: the writes cost nothing extra (the multipliers would have said 0.000347 and 278 reads).
		"p1\t0\t1000\t2000\t0.002500000000\t0.000000000000\t0.000000000000\t0.002500000000\t0\t1\t0.002500000000\t0.000000000000\t0.002500000000\topenai/gpt-4o@2024-10-01/standard\t1\n" +
		// No reads: the extra at list price, 1000 × (12 − 6) µ$; break-even ⌈6000 / 5.4⌉.
		"p2\t1000\t0\t0\t0.000000000000\t0.006000000000\t0.000000000000\t-0.006000000000\t1112\t0\t0.000000000000\t0.006000000000\t-0.006000000000\tanthropic/claude-sonnet-4-5@2025-09-29/standard/long\t1\n" +
		// 0.00972 × (4000 × 1.5) / (8000 × 1.35); break-even ⌈4000 × 1.5 / 1.35⌉; re-rated 0.0108 × the same.
		"p3\t4000\t0\t8000\t0.009720000000\t0.005400000000\t0.000000000000\t0.004320000000\t4445\t1\t0.010800000000\t0.006000000000\t0.004800000000\tanthropic/claude-sonnet-4-5@2025-09-29/batch\t1\n" +
		// The multipliers: 0.0054 × 10 × 1000 / (9 × 2000); break-even ⌈40000 / 36⌉.
		"p4\t1000\t0\t2000\t0.005400000000\t0.003000000000\t0.000000000000\t0.002400000000\t1112\t1\t0.005400000000\t0.003000000000\t0.002400000000\t\t0\n"
	if got != want {
		t.Errorf("cache_write_payback:\n got %s\nwant %s", got, want)
	}
}

// insertRerate stores the two cost_corrections rows of one re-rating of event id: column (cost_usd
// or savings_usd) goes from `from` under version fromVersion to `to` under toVersion.
func insertRerate(t *testing.T, conn driver.Conn, db, column, id, provider, model string, at time.Time, fromVersion, from, toVersion, to string) {
	t.Helper()
	c, err := conn.PrepareBatch(context.Background(), "INSERT INTO "+db+".cost_corrections (rerate_id, applied_at, seq, kind, event_id, time, provider, model, model_priced, events, priced, price_version, "+column+")")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Append("r1", at, uint64(1), "reverse", id, at, provider, model, model, int8(-1), uint8(1), fromVersion, decimal.RequireFromString(from).Neg()); err != nil {
		t.Fatal(err)
	}
	if err := c.Append("r1", at, uint64(2), "apply", id, at, provider, model, model, int8(1), uint8(1), toVersion, decimal.RequireFromString(to)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(); err != nil {
		t.Fatal(err)
	}
}
