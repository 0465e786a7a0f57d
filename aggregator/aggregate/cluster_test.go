//go:build chcluster

// The aggregator against the local ClickHouse cluster of deploy/clickhouse/cluster.sh (2 shards
// x 2 replicas, ZooKeeper): make chaos-clickhouse-cluster starts it and runs these tests. They
// kill and stop the cluster's nodes, so nothing else may use it meanwhile.

package aggregate

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster/chclustertest"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

type clusterEnv struct {
	*env
	layout chcluster.Layout
	conns  [][]driver.Conn
	local  string
	agg    *aggregator

	// what was published: events, their cost in picodollars, per partition and per minute.
	n           int
	pico        int64
	perShard    []int
	perMinute   map[int64]int
	nextEventID int
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	ce := &clusterEnv{env: newJetStream(t), layout: chclustertest.Layout(t), perMinute: map[int64]int{}}
	if len(ce.layout.Shards) != testPartitions {
		t.Fatalf("the cluster has %d shards; these tests map each of their %d partitions to a shard of its own", len(ce.layout.Shards), testPartitions)
	}
	ce.perShard = make([]int, len(ce.layout.Shards))
	ce.conns = chclustertest.Conns(t, ce.layout)
	ce.db, ce.local = chclustertest.Databases(t, ce.conns)
	ce.conn = ce.conns[len(ce.conns)-1][len(ce.conns[0])-1] // the last node: the faults spare it
	ce.startAggregator(t)
	return ce
}

// startAggregator starts an aggregator in cluster mode and waits until it is ready.
func (ce *clusterEnv) startAggregator(t *testing.T) {
	t.Helper()
	ce.agg = ce.startConfig(t, func(int) error { return nil }, func(c *Config) {
		c.Cluster = ce.layout
		c.ClickHouseDSN = "clickhouse://" + ce.layout.Shards[0][0].Addr
	})
	testkit.Eventually(t, time.Minute, "the aggregator to apply the cluster migrations and be ready", func() bool { return ce.agg.Ready() == nil })
}

// script runs deploy/clickhouse/cluster.sh with args.
func script(tb testing.TB, args ...string) {
	tb.Helper()
	cmd := exec.Command("deploy/clickhouse/cluster.sh", args...)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("deploy/clickhouse/cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// events publishes n new events in messages of per rows, timed within the last ten minutes,
// pausing gap between messages, and records what they add up to.
func (ce *clusterEnv) events(tb testing.TB, n, per int, gap time.Duration) {
	tb.Helper()
	base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	var rows []batch.Row
	for range n {
		i := ce.nextEventID
		ce.nextEventID++
		r := row("evt_"+strconv.Itoa(i), base.Add(time.Duration(i%600)*time.Second+time.Duration(i%1000)*time.Millisecond), int64(i%997+1)*1_000_003)
		r.Team = []string{"search", "ads", "support"}[i%3]
		ce.record(r)
		rows = append(rows, r)
		if len(rows) == per {
			ce.publish(tb, rows...)
			rows = rows[:0]
			time.Sleep(gap)
		}
	}
	if len(rows) > 0 {
		ce.publish(tb, rows...)
	}
}

func (ce *clusterEnv) record(r batch.Row) {
	ce.n++
	ce.pico += r.CostPico
	ce.perShard[ce.layout.ShardOf(stream.PartitionOf(r.Provider, r.ResponseID, r.ID, testPartitions))]++
	ce.perMinute[r.Time.Unix()-r.Time.Unix()%60]++
}

func usd(pico int64) string { return fmt.Sprintf("%d.%012d", pico/1e12, pico%1e12) }

// check compares every table with what was published: the Distributed tables and the views
// analysts query, and the shard-local tables of each replica but the nodes down.
func (ce *clusterEnv) check(tb testing.TB, down ...int) {
	tb.Helper()
	ce.waitDrained(tb)
	want := fmt.Sprintf("%d %d %s", ce.n, ce.n, usd(ce.pico))
	for _, c := range []struct{ name, q string }{
		{"usage_events", "SELECT concat(toString(count()), ' ', toString(uniqExact(event_id)), ' ', toString(sum(cost_usd))) FROM {db}.usage_events"},
		{"spend_1m", "SELECT concat(toString(sum(events)), ' ', toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1m"},
		{"spend_1d", "SELECT concat(toString(sum(events)), ' ', toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.spend_1d"},
		{"usage_costs (view)", "SELECT concat(toString(count()), ' ', toString(uniqExact(event_id)), ' ', toString(sum(cost_usd))) FROM {db}.usage_costs"},
		{"metered_share (view, GLOBAL NOT IN)", "SELECT concat(toString(sum(events)), ' ', toString(sum(events)), ' ', toString(sum(cost_usd))) FROM {db}.metered_share"},
	} {
		// A Distributed table reads one replica of each shard, which may not have fetched
		// the latest parts yet: replication is asynchronous. Every replica converges to the
		// exact figures, and no figure ever exceeds them.
		got := ce.converged(tb, c.q, want)
		if got != want {
			tb.Errorf("%s over the cluster: count, distinct ids, cost = %s, want %s", c.name, got, want)
		}
	}
	var minutes []string
	for m, n := range ce.perMinute {
		minutes = append(minutes, fmt.Sprintf("%d:%d", m, n))
	}
	slices.Sort(minutes)
	wantMinutes := strings.Join(minutes, ",")
	if got := ce.converged(tb, "SELECT arrayStringConcat(groupArray(s), ',') FROM (SELECT concat(toString(toUInt32(minute)), ':', toString(sum(events))) AS s FROM {db}.spend_1m GROUP BY minute ORDER BY s)", wantMinutes); got != wantMinutes {
		tb.Errorf("spend_1m events per minute over the cluster:\n got %s\nwant %s", got, wantMinutes)
	}
	// Each replica holds its shard's partitions only, every event once, and roll-ups that
	// agree with them.
	for s, shard := range ce.conns {
		for r, conn := range shard {
			if slices.Contains(down, s*len(shard)+r) {
				continue
			}
			wantLocal := fmt.Sprintf("%d %d %d", ce.perShard[s], ce.perShard[s], ce.perShard[s])
			q := fmt.Sprintf("SELECT concat(toString(count()), ' ', toString(uniqExact(event_id)), ' ', toString((SELECT sum(events) FROM %[1]s.spend_1m))) FROM %[1]s.usage_events", ce.local)
			var got string
			testkit.Eventually(tb, time.Minute, fmt.Sprintf("replica %d of shard %d to hold its shard's %d events", r, s, ce.perShard[s]), func() bool {
				got = chtest.String(tb, conn, q)
				return got == wantLocal
			})
			var mine []string
			for p := range testPartitions {
				if ce.layout.ShardOf(p) == s {
					mine = append(mine, strconv.Itoa(p))
				}
			}
			if n := chtest.String(tb, conn, fmt.Sprintf("SELECT toString(countIf(partition NOT IN (%s))) FROM %s.usage_events", strings.Join(mine, ", "), ce.local)); n != "0" {
				tb.Errorf("replica %d of shard %d holds %s events of another shard's partitions", r, s, n)
			}
		}
	}
	if dead := ce.deadLetters(tb); len(dead) != 0 {
		tb.Errorf("%d messages dead-lettered, want none: %s", len(dead), dead[0].Header.Get(stream.HeaderReason))
	}
}

// current returns the replica through which the aggregator writes shard s.
func (ce *clusterEnv) current(s int) int {
	sh := ce.agg.shardList.Load().shards[s]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.cur
}

// converged runs q until it answers want, for up to a minute, and returns its last answer.
func (ce *clusterEnv) converged(tb testing.TB, q, want string) string {
	tb.Helper()
	var got string
	deadline := time.Now().Add(time.Minute)
	for {
		if got = ce.query(tb, q); got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Two INSERTs whose roll-up blocks are identical (two events of one partition, minute, group
// and cost) both count: Replicated tables would drop the second block as a duplicate unless
// the aggregator turns insert_deduplicate off. Then events land on their partition's shard,
// once, and every table over the cluster is exact.
func TestClusterWritesEachPartitionToItsShard(t *testing.T) {
	ce := newClusterEnv(t)
	at := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	a := row("twin_a", at, 7_000_000_000_000)
	var b batch.Row
	for i := 0; ; i++ {
		b = row("twin_b"+strconv.Itoa(i), at, 7_000_000_000_000)
		if stream.PartitionOf("openai", "", b.ID, testPartitions) == stream.PartitionOf("openai", "", a.ID, testPartitions) {
			break
		}
	}
	ce.record(a)
	ce.publish(t, a)
	waitFor(t, "the first twin in usage_events", func() bool { return ce.count(t) == "1" })
	ce.record(b)
	ce.publish(t, b)
	waitFor(t, "the second twin in usage_events", func() bool { return ce.count(t) == "2" })
	ce.check(t)

	ce.events(t, 6000, 200, 0)
	ce.check(t)
}

// Fault scenario 15: one replica killed (SIGKILL) while events flow, and restarted; then one
// whole shard stopped for 30 s: its partition's writer backs off and reports itself not
// ready, nothing is dead-lettered, the backlog waits in JetStream and drains once the shard
// is back. Every table is exact after each.
func TestClusterSurvivesAKilledReplicaAndAStoppedShard(t *testing.T) {
	ce := newClusterEnv(t)
	defer script(t, "start") // whatever happens, leave the cluster running
	ce.events(t, 2000, 200, 0)
	ce.check(t)

	// The aggregator writes shard 0 through its first replica, node 0.
	before, err := strconv.Atoi(ce.count(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ce.events(t, 4000, 100, 50*time.Millisecond) // about 2 s
	}()
	// Killed once part of the burst is stored, while the rest is still coming.
	testkit.Eventually(t, time.Minute, "a part of the burst stored", func() bool {
		n, err := strconv.Atoi(ce.count(t))
		return err == nil && n >= before+500
	})
	script(t, "kill-node", "0")
	<-done
	time.Sleep(3 * time.Second)
	script(t, "start")
	ce.check(t)

	// The replica shard 0 writes through stops (SIGTERM) once everything is replicated: the
	// writer moves to the other one and goes on writing there.
	cur := ce.current(0)
	t.Logf("after replica 0 of shard 0 was killed and restarted, shard 0 writes through replica %d", cur)
	script(t, "stop-node", strconv.Itoa(cur))
	ce.conn = ce.conns[1][1]
	ce.events(t, 2000, 100, 20*time.Millisecond)
	ce.check(t, cur)
	if got := ce.current(0); got != 1-cur {
		t.Errorf("shard 0 writes through replica %d after replica %d stopped, want %d", got, cur, 1-cur)
	}
	// An aggregator started while that replica is still down starts and writes.
	if err := ce.agg.stop(); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	ce.startAggregator(t)
	ce.events(t, 1000, 100, 0)
	ce.check(t, cur)
	script(t, "start")

	// Shard 1 (nodes 2 and 3) stops for 30 s while events keep coming.
	stopped := time.Now()
	script(t, "stop-node", "2")
	script(t, "stop-node", "3")
	ce.conn = ce.conns[0][1]
	ce.events(t, 4000, 100, 50*time.Millisecond)
	testkit.Eventually(t, 30*time.Second, "the writer of shard 1's partition to report itself not ready", func() bool {
		err := ce.agg.Ready()
		return err != nil && strings.Contains(err.Error(), "partition 1")
	})
	if dead := ce.deadLetters(t); len(dead) != 0 {
		t.Fatalf("%d messages dead-lettered while shard 1 was down, want none: %s", len(dead), dead[0].Header.Get(stream.HeaderReason))
	}
	c, err := ce.js.Consumer(context.Background(), stream.Enriched, consumerName(1))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending+uint64(info.NumAckPending) == 0 {
		t.Errorf("partition 1 has no backlog while its shard is down")
	}
	time.Sleep(time.Until(stopped.Add(30 * time.Second)))
	script(t, "start")
	testkit.Eventually(t, 2*time.Minute, "the aggregator to be ready again", func() bool { return ce.agg.Ready() == nil })
	ce.conn = ce.conns[1][1]
	ce.check(t)
}
