package summary

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
)

func TestQueryAndPrint(t *testing.T) {
	dsn := os.Getenv("TOKENMETER_CLICKHOUSE_DSN")
	if dsn == "" {
		dsn = "clickhouse://127.0.0.1:9000"
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("ClickHouse at %s is required: %v", dsn, err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := "tm_summary_" + hex.EncodeToString(b[:])
	defer conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	// INSERT … SELECT: a native-protocol INSERT … VALUES would wait for a data block.
	row := func(id, provider, model, priced, team, cost string) string {
		return fmt.Sprintf("SELECT '%s', toDateTime('2026-11-20 10:00:00', 'UTC'), '%s', '%s', '%s', '%s', toDecimal128('%s', 12), %d",
			id, provider, model, priced, team, cost, len(priced))
	}
	// A dated snapshot is summed under the model it was priced as.
	if err := conn.Exec(ctx, "INSERT INTO "+db+".usage_events (event_id, time, provider, model, model_priced, team, cost_usd, priced) "+
		strings.Join([]string{
			row("a", "openai", "gpt-4o", "gpt-4o", "search", "1234.5"),
			row("b", "openai", "gpt-4o-2024-08-06", "gpt-4o", "support", "0.00005"),
			row("c", "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5", "search", "2.000000000001"),
			row("d", "acme", "acme-llm-7", "", "", "0"),
		}, " UNION ALL ")); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	r, err := Query(ctx, conn, db, at.Add(-time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	Print(&out, r)
	want := `spend since 2026-11-20 09:00 UTC: $1,236.5001 over 4 events (1 unpriced)
        TEAM  events         cost  unpriced
      search       2  $1,236.5000         0
     support       1      $0.0001         0
  (untagged)       1      $0.0000         1
                        MODEL  events         cost  unpriced
                openai/gpt-4o       2  $1,234.5001         0
  anthropic/claude-sonnet-4-5       1      $2.0000         0
              acme/acme-llm-7       1      $0.0000         1
`
	if out.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", out.String(), want)
	}
	if !r.Total.Cost.Equal(decimal.RequireFromString("1236.500050000001")) {
		t.Errorf("total cost %s is not exact", r.Total.Cost)
	}
}

func TestMoney(t *testing.T) {
	for in, want := range map[string]string{
		"0": "$0.0000", "1234567.891": "$1,234,567.8910", "-12.5": "-$12.5000", "999.99995": "$1,000.0000",
	} {
		if got := Money(decimal.RequireFromString(in)); got != want {
			t.Errorf("Money(%s) = %s, want %s", in, got, want)
		}
	}
}
