package history

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func TestFlushKeepsRowsUntilClickHouseTakesThem(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	w := New(conn, db)
	at := time.Date(2026, 2, 2, 11, 8, 15, 0, time.UTC)
	w.Add(Row{At: at, Fingerprint: "fp1", Rule: "team_spike", Labels: map[string]string{"team": "search"}, From: "inactive", To: "firing",
		Measure: "cost", Money: true, Value: 4_520_000_000_001, Level: 3_000_000_000_000, Baseline: 1_500_000_000_000, Summary: "spike"},
		Row{At: at.Add(time.Minute), Fingerprint: "fp2", Rule: "unpriced_model", From: "inactive", To: "firing", Measure: "unpriced_events", Value: 7})
	// The database does not exist yet: the write fails and the rows stay.
	if err := w.Flush(ctx); err == nil || w.Buffered() != 2 {
		t.Fatalf("flush without a table: err %v, buffered %d", err, w.Buffered())
	}
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil || w.Buffered() != 0 {
		t.Fatalf("flush: err %v, buffered %d", err, w.Buffered())
	}
	rows, err := conn.Query(ctx, "SELECT fingerprint, rule, labels, from_state, to_state, measure, toString(value), toString(level), toString(baseline), summary FROM "+db+".alert_history ORDER BY at")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var f [10]string
		if err := rows.Scan(&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &f[9]); err != nil {
			t.Fatal(err)
		}
		for i := 6; i <= 8; i++ { // toString(Decimal) differs by server version: compare exactly
			f[i] = decimal.RequireFromString(f[i]).String()
		}
		got = append(got, strings.Join(f[:], "|"))
	}
	want := `fp1|team_spike|{"team":"search"}|inactive|firing|cost|4.520000000001|3|1.5|spike; ` +
		`fp2|unpriced_model|{}|inactive|firing|unpriced_events|7|0|0|`
	if strings.Join(got, "; ") != want {
		t.Errorf("alert_history:\n%s\nwant\n%s", strings.Join(got, "; "), want)
	}
	for i := 0; i < MaxBuffered+5; i++ {
		w.Add(Row{})
	}
	if w.Buffered() != MaxBuffered || w.Dropped != 5 {
		t.Errorf("bounded buffer: %d rows, %d dropped", w.Buffered(), w.Dropped)
	}
}
