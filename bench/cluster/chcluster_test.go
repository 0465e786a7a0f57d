//go:build chaos && chcluster

package cluster_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/bench/chaos"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster/chclustertest"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
)

// TestMakeClusterClickHouse is fault scenario 15 on what `make cluster` runs: three
// nats-servers, the four stages as processes and the local ClickHouse cluster (2 shards x 2
// replicas, ZooKeeper), the aggregator in cluster mode. While events flow, one ClickHouse
// replica is killed with SIGKILL and started again, then a whole shard is stopped for 30 s
// and started again; every table read through the Distributed tables is exact and reconcile
// is clean. Run it with make chaos-clickhouse-cluster (deploy/clickhouse/cluster.sh must not
// be used by anything else meanwhile).
func TestMakeClusterClickHouse(t *testing.T) {
	m := startMakeCluster(t)
	r, ch := m.run, m.ch
	sending := r.sendSlowly(60_000) // 30 s
	testkit.Eventually(t, time.Minute, "a first part of the events stored", func() bool { return r.stored() >= 4_000 })

	ch("kill-node", "0") // shard 0's first replica, which the aggregator writes
	t.Log("killed ClickHouse node 0 (shard 0, replica 0) with SIGKILL")
	time.Sleep(3 * time.Second)
	ch("start")
	at := r.stored()
	testkit.Eventually(t, time.Minute, "more events stored after node 0 came back", func() bool { return r.stored() >= at+4_000 })

	ch("stop-node", "2")
	ch("stop-node", "3")
	t.Log("stopped shard 1 (nodes 2 and 3) for 30 s")
	time.Sleep(30 * time.Second)
	ch("start")

	if err := <-sending; err != nil {
		t.Fatalf("send: %v", err)
	}
	r.check(catalog(t))
	if dead, err := deadLetters(context.Background(), r.js); err != nil || dead != 0 {
		t.Errorf("USAGE_DEAD holds %d messages (%v), want 0", dead, err)
	}
}

// makeCluster is what `make cluster` runs, started by deploy/cluster/cluster.sh with the
// local ClickHouse cluster, and a run sending to its collector and reading through the
// Distributed tables.
type makeCluster struct {
	*run
	// dir holds the processes' logs and pid files, bin their binaries.
	dir, bin string
	// env is the environment the scripts, and the processes they start, run in.
	env []string
	// ch runs deploy/clickhouse/cluster.sh with args.
	ch func(args ...string)
}

// startMakeCluster starts the local ClickHouse cluster and deploy/cluster/cluster.sh on a
// fresh database, stopping both when the test ends.
func startMakeCluster(t *testing.T) *makeCluster {
	t.Helper()
	m := &makeCluster{bin: buildStages(t), dir: t.TempDir()}
	m.env = append(os.Environ(), "TOKENMETER_CLUSTER_DIR="+m.dir, "TOKENMETER_BIN="+m.bin, "TOKENMETER_CLICKHOUSE_DSN=")
	command := func(script string, args ...string) string {
		t.Helper()
		cmd := exec.Command(script, args...)
		cmd.Dir = "../.."
		cmd.Env = m.env
		out, err := cmd.CombinedOutput()
		if err != nil {
			logTails(t, m.dir)
			t.Fatalf("%s %v: %v\n%s", script, args, err, out)
		}
		return string(out)
	}
	stack := func(verb string) string { return command("deploy/cluster/cluster.sh", verb) }
	m.ch = func(args ...string) { command("deploy/clickhouse/cluster.sh", args...) }

	m.ch("start")
	t.Cleanup(func() { stack("stop") })
	layout := chclustertest.Layout(t)
	db, _ := chclustertest.Databases(t, chclustertest.Conns(t, layout))
	m.env = append(m.env, "TOKENMETER_CLUSTER_DATABASE="+db)
	t.Log(stack("start"))

	// Reads go through the Distributed tables of any node that answers.
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{"127.0.0.1:9304", "127.0.0.1:9302", "127.0.0.1:9301", "127.0.0.1:9303"}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	nc, err := nats.Connect("nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224",
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m.run = &run{t: t, js: js, conn: conn, db: db, stop: func() {}, sender: &chaos.Sender{URL: "http://127.0.0.1:8080", BodyEvents: 500, Clients: 2}}
	return m
}

// deadLetters counts the messages of USAGE_DEAD.
func deadLetters(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	st, err := js.Stream(ctx, stream.Dead)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}
