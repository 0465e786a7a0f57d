package main

import (
	"strings"
	"testing"
	"time"
)

// TestRunReadsItsEnvironment checks that run takes a flag the command line leaves unset from
// its environment variable, by the names it documents, and refuses to start on a value it
// cannot use, naming it.
func TestRunReadsItsEnvironment(t *testing.T) {
	for key, val := range map[string]string{
		"TOKENMETER_DATA_DIR":         "/var/lib/tm",
		"TOKENMETER_ADDR":             "0.0.0.0:8080",
		"TOKENMETER_OPS_ADDR":         "0.0.0.0:9090",
		"TOKENMETER_NATS_ADDR":        "",
		"TOKENMETER_CLICKHOUSE_DSN":   "clickhouse://ch:9000",
		"TOKENMETER_DATABASE":         "spend",
		"TOKENMETER_PRICING_DIR":      "/etc/tm/pricing",
		"TOKENMETER_DASHBOARD_ADDR":   "0.0.0.0:8090",
		"TOKENMETER_DASHBOARD_HOSTS":  "tm.example.com",
		"TOKENMETER_BILLS_SYNC_EVERY": "6h",
		"TOKENMETER_PARTITIONS":       "8",
		"TOKENMETER_STREAM_MAX_BYTES": "1048576",
		"TOKENMETER_MEMORY_LIMIT":     "0",
	} {
		t.Setenv(key, val)
	}
	o, err := parseRun([]string{"-addr", "127.0.0.1:1"}) // the command line wins
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"data", o.cfg.DataDir, "/var/lib/tm"},
		{"addr", o.cfg.HTTPAddr, "127.0.0.1:1"},
		{"ops", o.cfg.OpsAddr, "0.0.0.0:9090"},
		{"nats", o.cfg.NATSAddr, "127.0.0.1:4222"}, // empty is unset
		{"clickhouse", o.cfg.ClickHouseDSN, "clickhouse://ch:9000"},
		{"database", o.cfg.Database, "spend"},
		{"pricing", o.cfg.PricingDir, "/etc/tm/pricing"},
		{"dashboard", o.dashboardAddr, "0.0.0.0:8090"},
		{"dashboard-host", o.access.hosts, "tm.example.com"},
	} {
		if c.got != c.want {
			t.Errorf("-%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if o.billsEvery != 6*time.Hour || o.cfg.Partitions != 8 || o.cfg.Streams.MaxBytes != 1<<20 || o.memLimit != 0 {
		t.Errorf("bills-sync-every %v, partitions %d, stream-max-bytes %d, memory-limit %d; want 6h, 8, 1048576, 0",
			o.billsEvery, o.cfg.Partitions, o.cfg.Streams.MaxBytes, o.memLimit)
	}

	t.Setenv("TOKENMETER_BILLS_SYNC_EVERY", "soon")
	t.Setenv("TOKENMETER_PARTITIONS", "many")
	_, err = parseRun(nil)
	for _, want := range []string{
		`TOKENMETER_BILLS_SYNC_EVERY="soon" (flag -bills-sync-every)`,
		`TOKENMETER_PARTITIONS="many" (flag -partitions)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
