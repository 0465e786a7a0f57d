//go:build chcluster

package migrate

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/schemas/chschema"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster/chclustertest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// ApplyCluster on the local cluster: every migration on every node, Replicated tables in the
// local database, a Distributed table per table in the analysts' one, every view answering,
// and a second run applying nothing.
func TestApplyClusterLive(t *testing.T) {
	l := chclustertest.Layout(t)
	conns := chclustertest.Conns(t, l)
	db, local := chclustertest.Databases(t, conns)
	c := Cluster{Name: l.Name, Database: db, Local: local}
	ctx := context.Background()
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var all []uint32
	for _, m := range ms {
		all = append(all, m.Version)
	}
	got, err := ApplyCluster(ctx, chclustertest.All(conns), c)
	if err != nil {
		t.Fatalf("ApplyCluster: %v", err)
	}
	if !reflect.DeepEqual(got, all) {
		t.Fatalf("ApplyCluster applied %v, want %v", got, all)
	}
	for s, shard := range conns {
		for r, conn := range shard {
			if n := chtest.String(t, conn, "SELECT toString(count()) FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree' AND engine NOT LIKE 'Replicated%'", local); n != "0" {
				t.Errorf("shard %d replica %d: %s non-replicated MergeTree tables in %s, want 0", s, r, n, local)
			}
			if n := chtest.String(t, conn, "SELECT toString(count()) FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree'", db); n != "1" {
				t.Errorf("shard %d replica %d: %s MergeTree tables in %s, want 1 (schema_migrations)", s, r, n, db)
			}
			if n := chtest.String(t, conn, "SELECT toString(count()) FROM system.tables WHERE database = ? AND engine = 'MaterializedView'", db); n != "0" {
				t.Errorf("shard %d replica %d: %s materialized views in %s, want 0", s, r, n, db)
			}
			want := chtest.String(t, conn, "SELECT toString(count()) FROM system.tables WHERE database = ? AND engine LIKE 'Replicated%'", local)
			if n := chtest.String(t, conn, "SELECT toString(count()) FROM system.tables WHERE database = ? AND engine = 'Distributed'", db); n != want {
				t.Errorf("shard %d replica %d: %s Distributed tables in %s, want %s (one per replicated table)", s, r, n, db, want)
			}
			if n := chtest.String(t, conn, "SELECT toString(count()) FROM "+db+".schema_migrations"); n != strconv.Itoa(len(ms)) {
				t.Errorf("shard %d replica %d: %s migrations recorded, want %d", s, r, n, len(ms))
			}
		}
	}
	// Every view of the analysts' database answers over the cluster.
	views := chtest.String(t, conns[0][0], "SELECT arrayStringConcat(groupArray(name), ' ') FROM system.tables WHERE database = ? AND engine = 'View'", db)
	for v := range strings.FieldsSeq(views) {
		var n uint64
		if err := conns[1][1].QueryRow(ctx, "SELECT count() FROM "+db+"."+v).Scan(&n); err != nil {
			t.Errorf("SELECT count() FROM %s.%s: %v", db, v, err)
		}
	}
	got, err = ApplyCluster(ctx, chclustertest.All(conns), c)
	if err != nil || len(got) != 0 {
		t.Fatalf("second ApplyCluster = %v, %v; want nothing applied", got, err)
	}
	// With a node down, a cluster whose answering nodes have every migration needs nothing;
	// one that lacks a migration is refused.
	gone, err := clickhouse.Open(&clickhouse.Options{Addr: []string{"127.0.0.1:1"}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	withDown := append(chclustertest.All(conns), gone)
	if got, err := ApplyCluster(ctx, withDown, c); err != nil || len(got) != 0 {
		t.Errorf("ApplyCluster of a migrated cluster with a node down = %v, %v; want nothing and no error", got, err)
	}
	fresh := Cluster{Name: l.Name, Database: db + "_x", Local: local + "_x"}
	if got, err := ApplyCluster(ctx, withDown, fresh); err == nil || !strings.Contains(err.Error(), "node 4 does not answer") || len(got) != 0 {
		t.Errorf("ApplyCluster of a new database with a node down = %v, %v; want nothing and an error naming node 4", got, err)
	}

	// A command not told about the cluster finds everything applied, and refuses to lay the
	// single-server schema into a database of a cluster node.
	if got, err := Apply(ctx, conns[1][0], db); err != nil || len(got) != 0 {
		t.Fatalf("Apply on a cluster node = %v, %v; want nothing applied", got, err)
	}
	other := db + "_single"
	t.Cleanup(func() { _ = conns[1][0].Exec(context.Background(), "DROP DATABASE IF EXISTS "+other) })
	if got, err := Apply(ctx, conns[1][0], other); !errors.Is(err, ErrClusterNode) || len(got) != 0 {
		t.Fatalf("Apply of a new database on a cluster node = %v, %v; want nothing applied and ErrClusterNode", got, err)
	}
	if n := chtest.String(t, conns[1][0], "SELECT toString(count()) FROM system.tables WHERE database = ? AND name != 'schema_migrations'", other); n != "0" {
		t.Errorf("Apply refused but left %s tables in %s", n, other)
	}
}
