// Package chclustertest gives tests the local ClickHouse cluster of deploy/clickhouse/cluster.sh
// (2 shards x 2 replicas, ZooKeeper) and fresh databases on it. A test that cannot reach every
// node fails with how to start the cluster; it never skips.
package chclustertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// DefaultLayout is the cluster deploy/clickhouse/cluster.sh starts; TOKENMETER_CH_CLUSTER
// overrides it (chcluster.Parse's form).
const DefaultLayout = "tokenmeter=127.0.0.1:9301/8301,127.0.0.1:9302/8302;127.0.0.1:9303/8303,127.0.0.1:9304/8304"

// Spec returns the cluster's layout as text, for flags and configs.
func Spec() string {
	if s := os.Getenv("TOKENMETER_CH_CLUSTER"); s != "" {
		return s
	}
	return DefaultLayout
}

// Layout returns the cluster's layout.
func Layout(tb testing.TB) chcluster.Layout {
	tb.Helper()
	l, err := chcluster.Parse(Spec())
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// Conns opens a connection to every node, shard by shard, and closes them when the test ends.
func Conns(tb testing.TB, l chcluster.Layout) [][]driver.Conn {
	tb.Helper()
	out := make([][]driver.Conn, len(l.Shards))
	for s, rs := range l.Shards {
		for _, r := range rs {
			out[s] = append(out[s], Conn(tb, r.Addr))
		}
	}
	return out
}

// Conn opens a connection to the node at addr and closes it when the test ends.
func Conn(tb testing.TB, addr string) driver.Conn {
	tb.Helper()
	return chtest.Open(tb, &clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second},
		"a cluster node: start the cluster with deploy/clickhouse/cluster.sh start")
}

// Databases returns the names of an analysts' database and its shard-local database that do
// not exist yet, and drops both on every node when the test ends.
func Databases(tb testing.TB, conns [][]driver.Conn) (db, local string) {
	tb.Helper()
	db = chtest.NewName()
	local = db + chcluster.LocalSuffix
	tb.Cleanup(func() {
		for _, shard := range conns {
			for _, conn := range shard {
				for _, d := range []string{db, local} {
					if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+d); err != nil {
						tb.Logf("drop test database %s: %v", d, err)
					}
				}
			}
		}
	})
	return db, local
}

// All flattens conns.
func All(conns [][]driver.Conn) []driver.Conn {
	var out []driver.Conn
	for _, s := range conns {
		out = append(out, s...)
	}
	return out
}
