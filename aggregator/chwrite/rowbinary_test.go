package chwrite

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/aggregator/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chtest"
)

func inserter(tb testing.TB, db string) *Inserter {
	tb.Helper()
	u, err := HTTPURL(chtest.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	in, err := NewInserter(u, db)
	if err != nil {
		tb.Fatal(err)
	}
	return in
}

// dump returns every stored column of usage_events, row by row, as ClickHouse prints them.
func dump(tb testing.TB, db string) string {
	tb.Helper()
	u, err := HTTPURL(chtest.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.Get(u + "/?query=" + url.QueryEscape("SELECT * FROM "+db+".usage_events ORDER BY event_id FORMAT TabSeparated"))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("dump %s.usage_events: %s %s %v", db, resp.Status, b, err)
	}
	return string(b)
}

// Rows written as RowBinary read back exactly as the same rows written by the native driver,
// edge values included.
func TestInserterStoresWhatTheNativeDriverStores(t *testing.T) {
	conn := chtest.Conn(t)
	native, http := chtest.Database(t, conn), chtest.Database(t, conn)
	ctx := context.Background()
	for _, db := range []string{native, http} {
		if _, err := migrate.Apply(ctx, conn, db); err != nil {
			t.Fatal(err)
		}
	}
	rs := rows(300, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	rs[0].SavingsPico = -1_250_000_000 // a negative Decimal: two's complement in 128 bits
	rs[1].CostPico = math.MaxInt64
	rs[2].Team, rs[2].Feature = "", "zürich ✓ "+strings.Repeat("é", 200) // multi-byte, LEB128 length > 127
	rs[3].ExtraTags = []batch.Tag{{Key: "a", Value: ""}, {Key: "b", Value: "x"}, {Key: "c", Value: strings.Repeat("v", 300)}}
	rs[4].Time = time.Date(2026, 11, 1, 0, 0, 0, 999_000_000, time.UTC) // another month's edge, .999 s
	rs[5].Tokens.Input, rs[5].LatencyMS = 1<<62, 1<<40                  // latency beyond UInt32 is capped
	rs[6].CacheHit, rs[6].Priced = true, false

	if err := New(conn, native).Insert(ctx, 7, rs); err != nil {
		t.Fatal(err)
	}
	if err := inserter(t, http).Insert(ctx, 7, rs); err != nil {
		t.Fatal(err)
	}
	want, got := dump(t, native), dump(t, http)
	if strings.Count(want, "\n") != 300 {
		t.Fatalf("the native insert stored %d rows, want 300", strings.Count(want, "\n"))
	}
	if got != want {
		g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Fatalf("row %d differs:\nRowBinary: %s\nnative:    %s", i, g[i], w[i])
			}
		}
		t.Fatalf("RowBinary stored %d lines, native %d", len(g), len(w))
	}
}

func TestHTTPURL(t *testing.T) {
	for _, c := range []struct{ dsn, want, err string }{
		{"clickhouse://127.0.0.1:9000", "http://127.0.0.1:8123", ""},
		{"clickhouse://bob:s3cret@ch.internal:9000/tokenmeter", "http://bob:s3cret@ch.internal:8123", ""},
		{"clickhouse://ch.example.com:9440?secure=true", "https://ch.example.com:8443", ""},
		{"http://ch.internal:18123/db", "http://ch.internal:18123", ""},
		{"clickhouse://127.0.0.1:19000", "", "cannot tell ClickHouse's HTTP port from native port 19000; set the HTTP URL"},
	} {
		got, err := HTTPURL(c.dsn)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("HTTPURL(%q) error = %v, want %q", c.dsn, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("HTTPURL(%q) = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "ftp://x:1", "http://", "127.0.0.1:8123"} {
		if _, err := NewInserter(bad, "db"); err == nil {
			t.Errorf("NewInserter(%q) succeeded", bad)
		}
	}
}

func BenchmarkInserter(b *testing.B) {
	conn := chtest.Conn(b)
	db := chtest.Database(b, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		b.Fatal(err)
	}
	rs := rows(50_000, time.Now().UTC())
	in := inserter(b, db)
	b.ReportAllocs()
	for b.Loop() {
		if err := in.Insert(ctx, 0, rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rs)*b.N)/b.Elapsed().Seconds(), "rows/s")
}
