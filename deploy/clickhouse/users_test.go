// The users that deploy/clickhouse/local.sh configures: a writer that can do the pipeline's
// job and a reader that can only read, tested against the real local server.
package clickhouse_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/deploy/dashboard"
	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// password reads the password local.sh generated for tokenmeter_<name>.
func password(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("TOKENMETER_CH_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", ".data", "clickhouse")
	}
	data, err := os.ReadFile(filepath.Join(dir, "secrets", name+".password"))
	if err != nil {
		t.Fatalf("the password of tokenmeter_%s (start ClickHouse with deploy/clickhouse/local.sh start): %v", name, err)
	}
	return strings.TrimSpace(string(data))
}

// connAs opens a native connection to the test server as user.
func connAs(t *testing.T, user, pass string) driver.Conn {
	t.Helper()
	opts, err := clickhouse.ParseDSN(chtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	opts.Auth.Username, opts.Auth.Password = user, pass
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	return conn
}

// httpBase is the server's HTTP URL (TOKENMETER_CLICKHOUSE_HTTP, or derived from the DSN)
// with user and password.
func httpBase(t *testing.T, user, pass string) string {
	t.Helper()
	base := os.Getenv("TOKENMETER_CLICKHOUSE_HTTP")
	if base == "" {
		var err error
		if base, err = chwrite.HTTPURL(chtest.DSN()); err != nil {
			t.Fatal(err)
		}
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, pass)
	return u.String()
}

// readonlyErr reports whether err is ClickHouse's READONLY (164) or its refusal to let a
// user without DDL change allow_ddl (392).
func readonlyErr(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && (ex.Code == 164 || ex.Code == 392)
}

// TestWriterDoesThePipelinesJob: tokenmeter_writer applies the migrations, inserts events
// natively and over HTTP as the aggregator does, and reads the roll-ups.
func TestWriterDoesThePipelinesJob(t *testing.T) {
	writer := connAs(t, "tokenmeter_writer", password(t, "writer"))
	db := summarytest.Seed(t, writer, summarytest.Events()) // CREATE DATABASE, migrations, INSERT
	in, err := chwrite.NewInserter(httpBase(t, "tokenmeter_writer", password(t, "writer")), db)
	if err != nil {
		t.Fatal(err)
	}
	at := summarytest.Now()
	if err := in.Insert(context.Background(), 0, []batch.Row{{ID: "w1", Time: at, Received: at, Provider: "openai", Model: "gpt-4o", Team: "search", Priced: true, CostPico: 1_000_000_000_000}}); err != nil {
		t.Fatalf("insert over HTTP as the writer: %v", err)
	}
	if got := chtest.String(t, writer, "SELECT toString(count()) FROM "+db+".usage_events"); got != "11" {
		t.Errorf("usage_events holds %s rows, want 11", got)
	}
	if got := chtest.String(t, writer, "SELECT toString(sum(events)) FROM "+db+".spend_1d"); got != "11" {
		t.Errorf("spend_1d counts %s events, want 11", got)
	}
}

// TestReaderCannotWrite performs the attack a leaked dashboard or Grafana credential allows:
// as tokenmeter_reader, INSERT, CREATE, DROP, ALTER, switching readonly off (natively and as
// an HTTP parameter) and re-allowing DDL all fail with ClickHouse's readonly error, and
// nothing changes; SELECT works, and so does the dashboard.
func TestReaderCannotWrite(t *testing.T) {
	admin := chtest.Conn(t) // the default user, still without a password
	db := summarytest.Seed(t, admin, summarytest.Events())
	reader := connAs(t, "tokenmeter_reader", password(t, "reader"))
	ctx := context.Background()
	for _, q := range []string{
		"INSERT INTO " + db + ".usage_events (event_id) VALUES ('forged')",
		"CREATE TABLE " + db + ".forged (a UInt8) ENGINE = Memory",
		"CREATE DATABASE forged_" + db,
		"DROP TABLE " + db + ".usage_events",
		"DROP DATABASE " + db,
		"ALTER TABLE " + db + ".usage_events DELETE WHERE 1",
		"TRUNCATE TABLE " + db + ".usage_events",
		"SET readonly = 0",
		"SET allow_ddl = 1",
	} {
		if err := reader.Exec(ctx, q); !readonlyErr(err) {
			t.Errorf("%s as the reader: err = %v, want ClickHouse's readonly refusal", q, err)
		}
	}
	forged := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 0}))
	if err := reader.Exec(forged, "INSERT INTO "+db+".usage_events (event_id) VALUES ('forged')"); !readonlyErr(err) {
		t.Errorf("INSERT with readonly=0 in the query's settings: err = %v, want the readonly refusal", err)
	}
	resp, err := http.Post(httpBase(t, "tokenmeter_reader", password(t, "reader"))+"/?readonly=0", "text/plain",
		strings.NewReader("INSERT INTO "+db+".usage_events (event_id) VALUES ('forged')"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || !strings.Contains(string(body), "Code: 164") {
		t.Errorf("HTTP INSERT with readonly=0: %d %s, want ClickHouse's readonly refusal", resp.StatusCode, body)
	}
	if got := chtest.String(t, admin, "SELECT toString(count()) FROM "+db+".usage_events"); got != "10" {
		t.Errorf("usage_events holds %s rows after the attempts, want the 10 seeded", got)
	}
	if got := chtest.String(t, reader, "SELECT toString(count()) FROM "+db+".usage_events"); got != "10" {
		t.Errorf("the reader counts %s rows, want 10", got)
	}

	d, err := dashboard.New(dashboard.Config{Database: db, Now: summarytest.Now}, reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	defer srv.Close()
	r, err := http.Get(srv.URL + "/api/v1/spend?by=team&from=2026-11-01&to=2026-11-20&limit=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(r.Body)
	r.Body.Close()
	want := `{"by":"team","from":"2026-11-01","to":"2026-11-20","lines":[{"key":"support","events":3,"cost_usd":"6.250000000001","unpriced_events":0}]}`
	if got := strings.TrimSpace(string(body)); r.StatusCode != http.StatusOK || got != want {
		t.Errorf("dashboard as the reader: %d %s, want 200 %s", r.StatusCode, got, want)
	}
}

// TestWrongPasswordIsRefused: the users are not open.
func TestWrongPasswordIsRefused(t *testing.T) {
	opts, err := clickhouse.ParseDSN(chtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	opts.Auth.Username, opts.Auth.Password = "tokenmeter_reader", "wrong"
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var ex *clickhouse.Exception
	if err := conn.Ping(context.Background()); !errors.As(err, &ex) || ex.Code != 193 {
		t.Errorf("ping with a wrong password: %v, want ClickHouse's 193 (wrong password)", err)
	}
}
