package migrate

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/chschema"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func TestApplyTwice(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var all []uint32
	for _, m := range ms {
		all = append(all, m.Version)
	}

	got, err := Apply(ctx, conn, db)
	if err != nil {
		t.Fatalf("first Apply: %v", err)
	}
	if !reflect.DeepEqual(got, all) {
		t.Fatalf("first Apply applied %v, want %v", got, all)
	}
	tables := chtest.String(t, conn, "SELECT arrayStringConcat(groupArray(name), ',') FROM (SELECT name FROM system.tables WHERE database = ? ORDER BY name)", db)
	records := chtest.String(t, conn, "SELECT arrayStringConcat(groupArray(concat(toString(version), ':', name)), ',') FROM (SELECT version, name FROM "+db+".schema_migrations ORDER BY version)")
	// Which tables each migration creates is chschema's test; here the core ones must be there.
	for _, want := range []string{"schema_migrations", "spend_1d", "spend_1d_events_mv", "spend_1m", "spend_1m_events_mv", "usage_events"} {
		if !slices.Contains(strings.Split(tables, ","), want) {
			t.Fatalf("tables after first Apply = %s, want %s among them", tables, want)
		}
	}
	var want []string
	for _, m := range ms {
		want = append(want, fmt.Sprintf("%d:%s", m.Version, m.Name))
	}
	if wantRecords := strings.Join(want, ","); records != wantRecords {
		t.Fatalf("schema_migrations after first Apply = %s, want %s", records, wantRecords)
	}

	got, err = Apply(ctx, conn, db)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("second Apply applied %v, want nothing", got)
	}
	if again := chtest.String(t, conn, "SELECT arrayStringConcat(groupArray(name), ',') FROM (SELECT name FROM system.tables WHERE database = ? ORDER BY name)", db); again != tables {
		t.Fatalf("tables after second Apply = %s, want %s", again, tables)
	}
	if again := chtest.String(t, conn, "SELECT arrayStringConcat(groupArray(concat(toString(version), ':', name)), ',') FROM (SELECT version, name FROM "+db+".schema_migrations ORDER BY version)"); again != records {
		t.Fatalf("schema_migrations after second Apply = %s, want %s", again, records)
	}
}

func TestApplyRejectsBadDatabaseName(t *testing.T) {
	if _, err := Apply(context.Background(), nil, "tm; DROP TABLE x"); err == nil {
		t.Fatal(`Apply with database "tm; DROP TABLE x" succeeded, want an error`)
	}
}

// Processes starting together apply the migrations at the same moment: every one succeeds,
// and the schema is the same as one Apply makes.
func TestApplyConcurrently(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = Apply(ctx, conn, db) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Apply %d of 4 at once: %v", i, err)
		}
	}
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	got := chtest.String(t, conn, "SELECT toString(uniqExact(version)) FROM "+db+".schema_migrations")
	if want := fmt.Sprint(len(ms)); got != want {
		t.Fatalf("%s distinct versions recorded, want %s", got, want)
	}
	if again, err := Apply(ctx, conn, db); err != nil || len(again) != 0 {
		t.Fatalf("Apply after the concurrent ones applied %v (%v), want nothing", again, err)
	}
}

// A run that stopped after applying a migration and before recording it must not keep every
// later start from applying the rest.
func TestApplyAfterUnrecordedMigration(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	ms, err := chschema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := conn.Exec(ctx, m.Statement(db)); err != nil { // applied, never recorded
			t.Fatalf("apply %s: %v", m.Name, err)
		}
	}
	applied, err := Apply(ctx, conn, db)
	if err != nil {
		t.Fatalf("Apply over an applied but unrecorded schema: %v", err)
	}
	if len(applied) != len(ms) {
		t.Fatalf("Apply recorded %d migrations, want all %d", len(applied), len(ms))
	}
}
