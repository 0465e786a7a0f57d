//go:build chaos

package chaos

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// killClickHouse sends SIGKILL to the private server that deploy/clickhouse/local.sh started
// with env (its pid is in $TOKENMETER_CH_DIR/server.pid) and waits until it is gone.
func killClickHouse(t *testing.T, env []string) {
	t.Helper()
	var dir string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "TOKENMETER_CH_DIR="); ok {
			dir = v
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "server.pid"))
	if err != nil {
		t.Fatalf("read the private ClickHouse server's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file of the private ClickHouse server: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 clickhouse-server (pid %d): %v", pid, err)
	}
	waitFor(t, "clickhouse-server to die", func() bool {
		// local.sh started it in the background of a shell that has exited, so it is not
		// our child to reap: it is gone once signal 0 finds nothing (or a zombie's stat).
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
}

// insertRunning polls the ClickHouse server at httpURL until it runs an INSERT into
// db.usage_events, and reports whether one ran within d.
func insertRunning(httpURL, db string, d time.Duration) bool {
	q := url.Values{"query": {"SELECT count() FROM system.processes WHERE query LIKE 'INSERT INTO " + db + ".usage_events%'"}}
	c := http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		resp, err := c.Get(httpURL + "/?" + q.Encode())
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := strings.TrimSpace(string(body)); resp.StatusCode == http.StatusOK && n != "0" {
			return true
		}
	}
	return false
}

// Scenario 12: kill -9 of clickhouse-server at 5 or more random moments during a run, each
// time restarted at once. An INSERT in flight may leave usage_events written and the roll-ups
// not (or half), or land after its client gave up; the aggregator waits for it, inserts only
// the missing rows and repairs spend_1m and spend_1d of its partitions by difference
// (aggregate.repairRollups), so all three tables end exact.
func TestKillClickHouse(t *testing.T) {
	const minKills = 5
	dsn, httpURL, env := privateClickHouse(t)
	open := func() driver.Conn {
		opts, err := clickhouse.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := clickhouse.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	r := newRunOn(t, dsn, open(), "", map[string][]string{Aggregator: {"TOKENMETER_CLICKHOUSE_HTTP=" + httpURL}})
	r.sender.Rate = 5000
	sending := r.sendInBackground(generator(121, nil), unique)

	kills, midInsert := 0, 0
	sent := false
	for !sent || kills < minKills {
		select {
		case err := <-sending:
			sent = true
			if err != nil {
				t.Fatalf("send: %v", err)
			}
		case <-time.After(r.between(500*time.Millisecond, 3*time.Second)):
		}
		// Most moments fall between INSERTs; to hit the one that matters — the table's part
		// written and the views' not — wait up to 2 s for an INSERT to be running, then a
		// few milliseconds more.
		if insertRunning(httpURL, r.db, 2*time.Second) {
			midInsert++
			time.Sleep(r.between(0, 30*time.Millisecond))
		}
		killClickHouse(t, env)
		kills++
		time.Sleep(r.between(0, time.Second))
		localSH(t, env, "start")
	}
	// The test's own connections died with the server.
	r.conn = open()
	waitFor(t, "the aggregator to be ready again", func() bool { return r.ready(Aggregator) })
	r.check("12. kill -9 of clickhouse-server at random moments, restarted each time",
		fmt.Sprintf("%d × SIGKILL clickhouse-server (%d while an INSERT ran); %d INSERTs retried; %d roll-up repairs (a table of a partition each)",
			kills, midInsert, r.logLines(Aggregator, "insert failed; retrying"), r.logLines(Aggregator, "repaired a roll-up")))
	if dead := r.deadLetters(); len(dead) != 0 {
		t.Errorf("dead letters after ClickHouse crashes: %v", dead)
	}
}
