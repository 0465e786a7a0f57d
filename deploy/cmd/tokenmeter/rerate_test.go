package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/aggregator/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/chtest"
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

	var out bytes.Buffer
	if err := rerateTo(ctx, &out, args); err != nil {
		t.Fatal(err)
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
	if err := rerateTo(ctx, &out, append(args, "-apply", "-note", "gpt-4o was missing")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "applied as rr-") {
		t.Errorf("apply output:\n%s", out.String())
	}
	cost, unpriced, _ := strings.Cut(total(), " ")
	if d, err := decimal.NewFromString(cost); err != nil || !d.Equal(decimal.RequireFromString("0.00475")) || unpriced != "0" {
		t.Errorf("after -apply spend_1m = %s %s, want 0.00475 0", cost, unpriced)
	}
	if got := chtest.String(t, conn, "SELECT note FROM "+db+".rerate_runs"); got != "gpt-4o was missing" {
		t.Errorf("rerate_runs note = %q", got)
	}

	out.Reset()
	if err := rerateTo(ctx, &out, append(args, "-apply")); err != nil {
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
	err := rerateTo(context.Background(), &out, []string{"-from", "yesterday", "-to", "2025-01-01"})
	if err == nil || err.Error() != `-from "yesterday": not an RFC 3339 time or a YYYY-MM-DD date` {
		t.Errorf("bad -from: %v", err)
	}
	err = rerateTo(context.Background(), &out, []string{"-from", "2025-02-01", "-to", "2025-01-01"})
	if err == nil || err.Error() != "range: from (2025-02-01T00:00:00Z) must be before to (2025-01-01T00:00:00Z)" {
		t.Errorf("inverted range: %v", err)
	}
}
