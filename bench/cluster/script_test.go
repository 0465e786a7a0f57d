//go:build chaos

package cluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/bench/chaos"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestMakeCluster runs deploy/cluster/cluster.sh — what `make cluster` starts: three
// nats-server processes and the four stages as processes, on the fixed loopback ports —
// sends events, kills the USAGE_RAW leader's nats-server with SIGKILL mid-run, starts it again
// with the script, and checks the exact totals; then stops everything with the script.
func TestMakeCluster(t *testing.T) {
	bin := buildStages(t)
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	dir := t.TempDir()
	script := func(verb string) string {
		t.Helper()
		cmd := exec.Command("../../deploy/cluster/cluster.sh", verb)
		cmd.Env = append(os.Environ(), "TOKENMETER_CLUSTER_DIR="+dir, "TOKENMETER_BIN="+bin,
			"TOKENMETER_CLUSTER_DATABASE="+db, "TOKENMETER_CLICKHOUSE_DSN="+chtest.DSN())
		out, err := cmd.CombinedOutput()
		if err != nil {
			logTails(t, dir)
			t.Fatalf("cluster.sh %s: %v\n%s", verb, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { script("stop") })
	t.Log(script("start"))

	nc, err := nats.Connect("nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224",
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, js: js, conn: conn, db: db, stop: func() {}, sender: &chaos.Sender{URL: "http://127.0.0.1:8080", BodyEvents: 500, Clients: 2}}
	sending := r.sendSlowly(20_000)
	testkit.Eventually(t, time.Minute, "a first part of the events stored", func() bool { return r.stored() >= 3_000 })
	_, info := r.stream(stream.Raw)
	leader := info.Cluster.Leader // n0, n1 or n2
	pid, err := os.ReadFile(filepath.Join(dir, "nats-"+strings.TrimPrefix(leader, "n")+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.FindProcess(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s (pid %s), the leader of %s", leader, strings.TrimSpace(string(pid)), stream.Raw)
	at := r.stored()
	testkit.Eventually(t, time.Minute, "more events stored without the old leader", func() bool { return r.stored() >= at+3_000 })
	script("start") // starts again what is not running: the killed server
	if err := <-sending; err != nil {
		t.Fatalf("send: %v", err)
	}
	r.check(catalog(t))
	t.Log(script("stop"))
}
