// Package chtest gives tests a connection to the real ClickHouse server and a fresh database
// that is dropped when the test ends. A test that cannot reach ClickHouse fails; it never skips.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDSN is used when TOKENMETER_CLICKHOUSE_DSN is unset.
const DefaultDSN = "clickhouse://127.0.0.1:9000"

// DSN returns the ClickHouse DSN tests use.
func DSN() string {
	if dsn := os.Getenv("TOKENMETER_CLICKHOUSE_DSN"); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// Conn opens a connection to ClickHouse and closes it when the test ends.
func Conn(tb testing.TB) driver.Conn {
	tb.Helper()
	opts, err := clickhouse.ParseDSN(DSN())
	if err != nil {
		tb.Fatalf("parse ClickHouse DSN %q: %v", DSN(), err)
	}
	return Open(tb, opts, "start it with deploy/clickhouse/local.sh start")
}

// Open connects with opts, fails tb with the hint when the server does not answer, and closes
// the connection when the test ends.
func Open(tb testing.TB, opts *clickhouse.Options, hint string) driver.Conn {
	tb.Helper()
	conn, err := clickhouse.Open(opts)
	if err != nil {
		tb.Fatalf("open ClickHouse %s: %v", opts.Addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		tb.Fatalf("ClickHouse %s does not answer (%s): %v", opts.Addr, hint, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// NewName returns the name of a test database that does not exist yet.
func NewName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "tm_test_" + hex.EncodeToString(b[:])
}

// Database returns the name of a database that does not exist yet and drops it when the test
// ends.
func Database(tb testing.TB, conn driver.Conn) string {
	tb.Helper()
	db := NewName()
	tb.Cleanup(func() {
		if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db); err != nil {
			tb.Errorf("drop test database %s: %v", db, err)
		}
	})
	return db
}

// String runs a query returning one String value (wrap numbers in toString) and returns it.
func String(tb testing.TB, conn driver.Conn, query string, args ...any) string {
	tb.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&s); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return s
}

// CheckWriterSettings fails tb unless conn's session turns off Replicated tables'
// de-duplication of inserted blocks and inserts into Distributed tables synchronously: what
// every tokenmeter connection that writes sets (chcluster.WriteOptions).
func CheckWriterSettings(tb testing.TB, conn driver.Conn) {
	tb.Helper()
	for name, want := range map[string]string{"insert_deduplicate": "0", "insert_distributed_sync": "1"} {
		if got := String(tb, conn, "SELECT value FROM system.settings WHERE name = ?", name); got != want {
			tb.Errorf("%s = %q on the connection, want %q", name, got, want)
		}
	}
}
