package chschema

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestMigrationsOrder(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatalf("Migrations() error = %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("Migrations() returned none")
	}
	for i, m := range ms {
		// Versions are numbered by area (0001-0009 the core tables, 0010 alerting, 0020 pricing,
		// 0030 analysts' views, 0040 de-duplication), so gaps are expected; order is not.
		if m.Version == 0 || i > 0 && m.Version <= ms[i-1].Version {
			t.Errorf("migration %s has version %d: versions must be positive and increasing", m.Name, m.Version)
		}
		if !strings.Contains(m.SQL, "{db}.") {
			t.Errorf("migration %s does not name its database as {db}", m.Name)
		}
		for _, line := range strings.Split(m.SQL, "\n") {
			if code, _, _ := strings.Cut(line, "--"); strings.Contains(code, ";") {
				t.Errorf("migration %s holds a ';' outside a comment: one statement per file", m.Name)
			}
		}
	}
	if got := ms[0].Statement("tm_x"); !strings.Contains(got, "CREATE TABLE tm_x.usage_events") || strings.Contains(got, "{db}") {
		t.Errorf("Statement(tm_x) did not replace {db}:\n%s", got)
	}
}

// clickhouse talks to the test server over its HTTP interface, which needs no driver.
type clickhouse struct {
	t   testing.TB
	url string
}

func newClickHouse(t testing.TB) *clickhouse {
	t.Helper()
	u := os.Getenv("TOKENMETER_CLICKHOUSE_HTTP")
	if u == "" {
		u = "http://127.0.0.1:8123/"
	}
	ch := &clickhouse{t: t, url: u}
	if got := ch.query("SELECT 1", ""); got != "1\n" {
		t.Fatalf("ClickHouse at %s answered %q to SELECT 1", u, got)
	}
	return ch
}

// query runs sql with body as the data of an INSERT (or "" for none) and returns the output.
func (ch *clickhouse) query(sql, body string) string {
	ch.t.Helper()
	target, req := ch.url, strings.NewReader(sql)
	if body != "" {
		target = ch.url + "?query=" + url.QueryEscape(sql)
		req = strings.NewReader(body)
	}
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post(target, "text/plain", req)
	if err != nil {
		ch.t.Fatalf("ClickHouse at %s is unreachable (start it with deploy/clickhouse/local.sh start): %v", ch.url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		ch.t.Fatalf("read answer to %q: %v", sql, err)
	}
	if resp.StatusCode != http.StatusOK {
		ch.t.Fatalf("ClickHouse answered %s to\n%s\n%s", resp.Status, sql, out)
	}
	return string(out)
}

// freshDatabase creates a database of a random name, dropped when the test ends.
func (ch *clickhouse) freshDatabase() string {
	ch.t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	db := "tm_test_" + hex.EncodeToString(b)
	ch.query("CREATE DATABASE "+db, "")
	ch.t.Cleanup(func() { ch.query("DROP DATABASE IF EXISTS "+db, "") })
	return db
}

func (ch *clickhouse) migrate(db string) []string {
	ch.t.Helper()
	ms, err := Migrations()
	if err != nil {
		ch.t.Fatal(err)
	}
	var created []string
	for _, m := range ms {
		ch.query(m.Statement(db), "")
		created = append(created, m.Name)
	}
	return created
}

func TestMigrationsApply(t *testing.T) {
	ch := newClickHouse(t)
	db1, db2 := ch.freshDatabase(), ch.freshDatabase()
	ch.migrate(db1)
	ch.migrate(db2)

	tables := ch.query("SELECT name FROM system.tables WHERE database = '"+db1+"' ORDER BY name", "")
	if want := createdNames(t); tables != want {
		t.Fatalf("tables after migrating:\n%s\nwant those the migrations create:\n%s", tables, want)
	}
	// Both databases must be identical but for their names: the statements depend on nothing
	// but {db}.
	for _, table := range strings.Fields(tables) {
		a := ch.query("SHOW CREATE TABLE "+db1+"."+table, "")
		b := ch.query("SHOW CREATE TABLE "+db2+"."+table, "")
		if strings.ReplaceAll(a, db1, "DB") != strings.ReplaceAll(b, db2, "DB") {
			t.Errorf("SHOW CREATE TABLE %s differs:\n%s\n%s", table, a, b)
		}
	}

	// Three events over two minutes and two months, in one INSERT as the aggregator writes.
	ch.query("INSERT INTO "+db1+".usage_events (event_id, time, provider, model, team, input_tokens, output_tokens, cost_usd, savings_usd, priced) FORMAT TabSeparated",
		"e1\t2026-10-31 23:59:10\topenai\tgpt-4o\tsearch\t10\t1\t0.000000000001\t0\t1\n"+
			"e2\t2026-10-31 23:59:50\topenai\tgpt-4o\tsearch\t20\t2\t1.5\t0.25\t1\n"+
			"e3\t2026-11-01 00:00:05\topenai\tgpt-4o\tsearch\t40\t4\t2.000000000003\t0\t0\n")

	for _, tc := range []struct{ sql, want string }{
		{"SELECT count(), toString(sum(cost_usd)) FROM " + db1 + ".usage_events",
			"3\t3.500000000004\n"},
		{"SELECT toString(minute), sum(events), sum(input_tokens), sum(output_tokens), toString(sum(cost_usd)), toString(sum(savings_usd)), sum(unpriced_events) FROM " +
			db1 + ".spend_1m GROUP BY minute ORDER BY minute",
			"2026-10-31 23:59:00\t2\t30\t3\t1.500000000001\t0.250000000000\t0\n" +
				"2026-11-01 00:00:00\t1\t40\t4\t2.000000000003\t0.000000000000\t1\n"},
		{"SELECT toString(day), sum(events), toString(sum(cost_usd)), sum(unpriced_events) FROM " +
			db1 + ".spend_1d GROUP BY day ORDER BY day",
			"2026-10-31\t2\t1.500000000001\t0\n" +
				"2026-11-01\t1\t2.000000000003\t1\n"},
		{"SELECT toString(sum(cost_usd)) FROM " + db1 + ".spend_1m", "3.500000000004\n"},
		{"SELECT toString(sum(cost_usd)) FROM " + db1 + ".spend_1d", "3.500000000004\n"},
		{"SELECT partition, sum(rows) FROM system.parts WHERE database = '" + db1 + "' AND table = 'usage_events' AND active GROUP BY partition ORDER BY partition",
			"202610\t2\n202611\t1\n"},
	} {
		if got := ch.query(tc.sql, ""); got != tc.want {
			t.Errorf("%s\ngot\n%s\nwant\n%s", tc.sql, got, tc.want)
		}
	}
}

// createdNames lists, sorted, one per line, the tables and views the migrations create.
func createdNames(t *testing.T) string {
	t.Helper()
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) \{db\}\.(\w+)`)
	drop := regexp.MustCompile(`(?m)^DROP TABLE IF EXISTS \{db\}\.(\w+)`)
	var names []string
	for _, m := range ms {
		for _, g := range re.FindAllStringSubmatch(m.SQL, -1) {
			names = append(names, g[1])
		}
		for _, g := range drop.FindAllStringSubmatch(m.SQL, -1) {
			names = slices.DeleteFunc(names, func(n string) bool { return n == g[1] })
		}
	}
	sort.Strings(names)
	if len(names) < 5 {
		t.Fatalf("the migrations create %v, fewer than the five core tables", names)
	}
	return strings.Join(names, "\n") + "\n"
}
