package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/enricher/rerate"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestRerateCommand stores a gpt-4o call as unpriced (as if the catalogue had lacked the
// model when it arrived), then re-rates its day with the shipped catalogue: a dry run
// changes nothing, -apply writes the correction once, and a second -apply finds nothing.
func TestRerateCommand(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 11, 3, 9, 15, 0, 0, time.UTC)
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, provider, model, team, input_tokens, cached_input_tokens, output_tokens, cost_usd, savings_usd, priced)")
	if err != nil {
		t.Fatal(err)
	}
	zero := decimal.Zero
	if err := b.Append("evt-1", at, "openai", "gpt-4o-2024-08-06", "search", uint64(1200), uint64(1000), uint64(300), zero, zero, uint8(0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	args := []string{"-clickhouse", chtest.DSN(), "-database", db, "-from", "2025-11-03", "-to", "2025-11-04"}
	total := func() string {
		return chtest.String(t, conn, "SELECT concat(toString(sum(cost_usd)), ' ', toString(sum(unpriced_events))) FROM "+db+".spend_1m")
	}

	var out, progress bytes.Buffer
	// The clock moves 0.1 s per reading: the start, one reading per slice (24 hours), the
	// final line. Lines come after slices 10 and 20; the event is in slice 10 (09:00-10:00).
	if err := rerateTo(ctx, &out, &progress, ticker(100*time.Millisecond), args); err != nil {
		t.Fatal(err)
	}
	wantProgress := "rerate: 1/1 events (100%), 1 events/s\n" +
		"rerate: 1/1 events (100%), 0.5 events/s\n" +
		"rerate: 1/1 events in 2.5s, 0.4 events/s\n"
	if progress.String() != wantProgress {
		t.Errorf("progress:\n%s\nwant:\n%s", progress.String(), wantProgress)
	}
	// 200·2.50 + 1000·1.25 + 300·10 µUSD = $0.00475.
	for _, want := range []string{"1 events scanned, 1 change,", "search", "gpt-4o-2024-08-06", "0.004750000000", "dry run: nothing written"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out.String())
		}
	}
	if got := total(); got != "0 1" && got != "0.000000000000 1" {
		t.Errorf("after a dry run spend_1m = %q, want no change", got)
	}

	out.Reset()
	progress.Reset()
	if err := rerateTo(ctx, &out, &progress, ticker(time.Hour), append(args, "-q", "-apply", "-note", "gpt-4o was missing")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "applied as rr-") {
		t.Errorf("apply output:\n%s", out.String())
	}
	if progress.Len() != 0 {
		t.Errorf("-q printed progress:\n%s", progress.String())
	}
	cost, unpriced, _ := strings.Cut(total(), " ")
	if d, err := decimal.NewFromString(cost); err != nil || !d.Equal(decimal.RequireFromString("0.00475")) || unpriced != "0" {
		t.Errorf("after -apply spend_1m = %s %s, want 0.00475 0", cost, unpriced)
	}
	if got := chtest.String(t, conn, "SELECT note FROM "+db+".rerate_runs"); got != "gpt-4o was missing" {
		t.Errorf("rerate_runs note = %q", got)
	}

	out.Reset()
	if err := rerateTo(ctx, &out, io.Discard, time.Now, append(args, "-apply")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "nothing to re-rate") {
		t.Errorf("second -apply output:\n%s", out.String())
	}
	if got := chtest.String(t, conn, "SELECT toString(count()) FROM "+db+".cost_corrections"); got != "2" {
		t.Errorf("cost_corrections rows = %s, want 2", got)
	}
}

func TestRerateFlags(t *testing.T) {
	var out bytes.Buffer
	err := rerateTo(context.Background(), &out, &out, time.Now, []string{"-from", "yesterday", "-to", "2025-01-01"})
	if err == nil || err.Error() != `-from "yesterday": not an RFC 3339 time or a YYYY-MM-DD date` {
		t.Errorf("bad -from: %v", err)
	}
	err = rerateTo(context.Background(), &out, &out, time.Now, []string{"-from", "2025-02-01", "-to", "2025-01-01"})
	if err == nil || err.Error() != "range: from (2025-02-01T00:00:00Z) must be before to (2025-01-01T00:00:00Z)" {
		t.Errorf("inverted range: %v", err)
	}
}

// The slices of a range follow each other without gap or overlap, at whole seconds inside,
// about an hour each and never more than 100.
func TestRerateSlices(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	f := func(from, to string, n int, second string) {
		t.Helper()
		r := rerate.Range{From: at(from), To: at(to)}
		got := rerateSlices(r)
		if len(got) != n {
			t.Fatalf("%s .. %s: %d slices, want %d", from, to, len(got), n)
		}
		if !got[0].From.Equal(r.From) || !got[len(got)-1].To.Equal(r.To) {
			t.Errorf("%s .. %s: slices span %v .. %v", from, to, got[0].From, got[len(got)-1].To)
		}
		for i, s := range got {
			if !s.From.Before(s.To) {
				t.Errorf("%s .. %s: slice %d is empty: %v", from, to, i, s)
			}
			if i > 0 && (!s.From.Equal(got[i-1].To) || !s.From.Equal(s.From.Truncate(time.Second))) {
				t.Errorf("%s .. %s: slice %d starts at %v after %v", from, to, i, s.From, got[i-1].To)
			}
		}
		if n > 1 && !got[1].From.Equal(at(second)) {
			t.Errorf("%s .. %s: second slice starts at %v, want %s", from, to, got[1].From, second)
		}
	}
	f("2025-11-03T00:00:00Z", "2025-11-04T00:00:00Z", 24, "2025-11-03T01:00:00Z")
	f("2025-11-03T00:00:00Z", "2025-11-03T00:30:00Z", 1, "")
	f("2025-11-03T00:00:00Z", "2025-11-03T01:00:01Z", 2, "2025-11-03T00:30:00Z")
	f("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", 100, "2025-01-04T15:36:00Z")
	f("2025-11-03T00:00:00.250Z", "2025-11-03T02:00:00.750Z", 3, "2025-11-03T00:40:00Z")
	f("2025-11-03T00:00:00Z", "2025-11-03T00:00:00.001Z", 1, "")
	// Longer than time.Duration holds (292 years): the length saturates, and the last slice
	// takes the rest.
	f("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", 100, "0003-12-04T12:28:40Z")
}

// Computed slice by slice, the plan is the one rerate.Compute gives for the range in one
// piece: the same events, in the same order, with the same counts, whatever side of a slice
// bound an event falls on.
func TestRerateSlicedPlanIsTheWholePlan(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, time_ms, provider, model, team, input_tokens, output_tokens, cost_usd, savings_usd, priced)")
	if err != nil {
		t.Fatal(err)
	}
	zero := decimal.Zero
	day := time.Date(2025, 11, 3, 0, 0, 0, 0, time.UTC)
	for i, at := range []time.Duration{0, time.Hour - time.Second, time.Hour, 90 * time.Minute, 23*time.Hour + 59*time.Minute + 59*time.Second, 24 * time.Hour} {
		model := "gpt-4o"
		if i%2 == 1 {
			model = "acme-llm-7" // unknown to the catalogue: scanned, not changed
		}
		if err := b.Append(fmt.Sprintf("evt-%d", i), day.Add(at), uint16(999), "openai", model, "search", uint64(1000), uint64(100), zero, zero, uint8(0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	cat, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	r := rerate.Range{From: day, To: day.Add(24 * time.Hour)}
	whole, err := rerate.Compute(ctx, conn, db, cat, r)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	sliced, err := computeWithProgress(ctx, conn, db, cat, r, &progress, ticker(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if whole.Scanned != 5 || len(whole.Changes) != 3 {
		t.Fatalf("whole plan: %d scanned, %d changes; want 5, 3", whole.Scanned, len(whole.Changes))
	}
	if !reflect.DeepEqual(sliced, whole) {
		t.Errorf("sliced plan:\n%+v\nwant:\n%+v", sliced, whole)
	}
	if lines := strings.Split(progress.String(), "\n"); len(lines) != 26 || lines[24] != "rerate: 5/5 events in 25m0s, 0.0033 events/s" {
		t.Errorf("progress: %d lines, final %q", len(lines), lines[len(lines)-2])
	}
}
