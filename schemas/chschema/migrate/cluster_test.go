package migrate

import (
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/chschema"
)

// The cluster statements of a few kinds of migration, as text: the local database gets the
// Replicated engine, the analysts' database a Distributed table, GLOBAL subqueries, no
// materialized view, no sorting-key change, and no backfill (a node copies its own rows).
func TestClusterStatements(t *testing.T) {
	c := Cluster{Name: "tm", Database: "a", Local: "a_local"}
	f := func(sql, wantLocal, wantAnalysts string) {
		t.Helper()
		local, analysts := c.Statements(chschema.Migration{Version: 1, Name: "1_x", SQL: sql})
		if local != wantLocal || analysts != wantAnalysts {
			t.Errorf("Statements(%q) =\n  %q\n  %q\nwant\n  %q\n  %q", sql, local, analysts, wantLocal, wantAnalysts)
		}
	}
	f("-- c\nCREATE TABLE {db}.t (a UInt8) ENGINE = SummingMergeTree\nORDER BY a",
		"CREATE TABLE a_local.t (a UInt8) ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/a_local/t', '{replica}')\nORDER BY a",
		"CREATE TABLE a.t AS a_local.t ENGINE = Distributed(tm, a_local, t, rand())")
	f("CREATE TABLE {db}.t (a UInt8, v UInt8) ENGINE = ReplacingMergeTree(v) ORDER BY a",
		"CREATE TABLE a_local.t (a UInt8, v UInt8) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/a_local/t', '{replica}', v) ORDER BY a",
		"CREATE TABLE a.t AS a_local.t ENGINE = Distributed(tm, a_local, t, rand())")
	f("CREATE MATERIALIZED VIEW {db}.mv TO {db}.t AS SELECT a FROM {db}.u",
		"CREATE MATERIALIZED VIEW a_local.mv TO a_local.t AS SELECT a FROM a_local.u", "")
	f("ALTER TABLE {db}.t ADD COLUMN p String,\n    MODIFY ORDER BY (a, p)",
		"ALTER TABLE a_local.t ADD COLUMN p String,\n    MODIFY ORDER BY (a, p)", "ALTER TABLE a.t ADD COLUMN p String")
	f("CREATE VIEW {db}.v AS SELECT a FROM {db}.t ANY LEFT JOIN (SELECT a FROM {db}.u) USING a WHERE a NOT IN (SELECT a FROM {db}.w) AND a IN (1, 2) ARRAY JOIN x",
		"CREATE VIEW a_local.v AS SELECT a FROM a_local.t ANY LEFT JOIN (SELECT a FROM a_local.u) USING a WHERE a NOT IN (SELECT a FROM a_local.w) AND a IN (1, 2) ARRAY JOIN x",
		"CREATE VIEW a.v AS SELECT a FROM a.t GLOBAL ANY LEFT JOIN (SELECT a FROM a.u) USING a WHERE a GLOBAL NOT IN (SELECT a FROM a.w) AND a IN (1, 2) ARRAY JOIN x")
	f("DROP TABLE IF EXISTS {db}.v", "DROP TABLE IF EXISTS a_local.v", "DROP TABLE IF EXISTS a.v")
	f("INSERT INTO {db}.t (a) SELECT a FROM {db}.u WHERE a != 0",
		"INSERT INTO a_local.t (a) SELECT a FROM a_local.u WHERE a != 0", "")
}

// Every migration's analysts' statement names no local table and every local one no
// analysts' table: a slip would make a Distributed table read itself.
func TestClusterStatementsStayInTheirDatabase(t *testing.T) {
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	c := Cluster{Name: "tm", Database: "ana", Local: "loc"}
	for _, m := range ms {
		local, analysts := c.Statements(m)
		if strings.Contains(local, "ana.") {
			t.Errorf("%s: local statement names the analysts' database: %s", m.Name, local)
		}
		if strings.Contains(strings.ReplaceAll(analysts, "AS loc.", ""), "loc.") && !strings.Contains(analysts, "Distributed(") {
			t.Errorf("%s: analysts' statement names the local database: %s", m.Name, analysts)
		}
		if strings.Contains(local, "MergeTree") && !strings.Contains(local, "Replicated") {
			t.Errorf("%s: local statement keeps a non-replicated engine: %s", m.Name, local)
		}
	}
}
