package chcluster_test

import (
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestWriteOptions: a writer's connection turns off the de-duplication of inserted blocks and
// inserts into Distributed tables synchronously, on the server, unless its DSN says otherwise.
func TestWriteOptions(t *testing.T) {
	for _, c := range []struct {
		name, query     string
		dedup, syncDist string
	}{
		{"the DSN sets neither", "", "0", "1"},
		{"the DSN keeps de-duplication", "insert_deduplicate=1", "1", "1"},
		{"the DSN inserts asynchronously", "insert_distributed_sync=0", "0", "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := chtest.DSN()
			if c.query != "" {
				sep := "?"
				if strings.Contains(dsn, "?") {
					sep = "&"
				}
				dsn += sep + c.query
			}
			opts, err := clickhouse.ParseDSN(dsn)
			if err != nil {
				t.Fatal(err)
			}
			chcluster.WriteOptions(opts)
			conn, err := clickhouse.Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for name, want := range map[string]string{"insert_deduplicate": c.dedup, "insert_distributed_sync": c.syncDist} {
				if got := chtest.String(t, conn, "SELECT value FROM system.settings WHERE name = ?", name); got != want {
					t.Errorf("%s = %q on the server, want %q", name, got, want)
				}
			}
		})
	}
}
