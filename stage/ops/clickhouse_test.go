package ops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestClickHouseDSN(t *testing.T) {
	f := func(dsn, content, wantDSN, wantPassword string) {
		t.Helper()
		got, err := ClickHouseDSN(dsn, writeFile(t, content))
		if err != nil {
			t.Fatalf("ClickHouseDSN(%q): %v", dsn, err)
		}
		if got != wantDSN {
			t.Errorf("ClickHouseDSN(%q) = %q, want %q", dsn, got, wantDSN)
		}
		opts, err := clickhouse.ParseDSN(got)
		if err != nil {
			t.Fatalf("clickhouse.ParseDSN(%q): %v", got, err)
		}
		if opts.Auth.Username != "tokenmeter_writer" || opts.Auth.Password != wantPassword {
			t.Errorf("the driver reads user %q, password %q; want tokenmeter_writer, %q", opts.Auth.Username, opts.Auth.Password, wantPassword)
		}
	}
	f("clickhouse://tokenmeter_writer@clickhouse:9000", "s3cret\n",
		"clickhouse://tokenmeter_writer:s3cret@clickhouse:9000", "s3cret")
	f("clickhouse://tokenmeter_writer@ch:9440/tokenmeter?secure=true", "s3cret\r\n",
		"clickhouse://tokenmeter_writer:s3cret@ch:9440/tokenmeter?secure=true", "s3cret")
	// Characters that mean something in a URL arrive intact; only the trailing line breaks go.
	f("clickhouse://tokenmeter_writer@clickhouse:9000", "a@b:c/d?e#f %g\r\n\n",
		"clickhouse://tokenmeter_writer:a%40b%3Ac%2Fd%3Fe%23f%20%25g@clickhouse:9000", "a@b:c/d?e#f %g")

	if got, err := ClickHouseDSN("clickhouse://u:p@h:9000", ""); err != nil || got != "clickhouse://u:p@h:9000" {
		t.Errorf("without a file: %q, %v; want the DSN as it is", got, err)
	}
}

func TestClickHouseDSNRefuses(t *testing.T) {
	f := func(dsn, file, want string) {
		t.Helper()
		_, err := ClickHouseDSN(dsn, file)
		if err == nil || err.Error() != want {
			t.Errorf("ClickHouseDSN(%q, %s): %v, want %q", dsn, file, err, want)
		}
	}
	pw := writeFile(t, "s3cret")
	f("clickhouse://tokenmeter_writer:inline@clickhouse:9000", pw,
		`ClickHouse DSN "clickhouse://tokenmeter_writer:xxxxx@clickhouse:9000" holds a password and so does `+pw+`: keep one`)
	f("clickhouse://clickhouse:9000", pw, `ClickHouse DSN "clickhouse://clickhouse:9000" names no user for the password of `+pw)
	f("clickhouse:9000", pw, `ClickHouse DSN "…": not a URL with a host, so the password of `+pw+` cannot be added to it`)
	empty := writeFile(t, "\n")
	f("clickhouse://u@h:9000", empty, "ClickHouse password file "+empty+" is empty")
	missing := filepath.Join(t.TempDir(), "none")
	f("clickhouse://u@h:9000", missing, "read the ClickHouse password: open "+missing+": no such file or directory")
}

// TestClickHouseDSNLogsIn connects to the test server as tokenmeter_writer, the user
// deploy/clickhouse/local.sh creates, with its password given as a file; a file holding another
// password is refused by the server, so the password reached it.
func TestClickHouseDSNLogsIn(t *testing.T) {
	dir := os.Getenv("TOKENMETER_CH_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", ".data", "clickhouse")
	}
	opts, err := clickhouse.ParseDSN(chtest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	ping := func(file string) error {
		t.Helper()
		dsn, err := ClickHouseDSN("clickhouse://tokenmeter_writer@"+opts.Addr[0], file)
		if err != nil {
			t.Fatalf("ClickHouseDSN (start ClickHouse with deploy/clickhouse/local.sh start): %v", err)
		}
		o, err := clickhouse.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := clickhouse.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return conn.Exec(ctx, "SELECT 1")
	}
	if err := ping(filepath.Join(dir, "secrets", "writer.password")); err != nil {
		t.Errorf("as tokenmeter_writer with its password file: %v", err)
	}
	var ex *proto.Exception
	if err := ping(writeFile(t, "not-the-password\n")); !errors.As(err, &ex) || ex.Code != 193 && ex.Code != 516 {
		t.Errorf("as tokenmeter_writer with another password: %v, want ClickHouse's exception 193 (WRONG_PASSWORD, 18.16) or 516 (AUTHENTICATION_FAILED, current releases)", err)
	}
}
