package migrate

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/chschema"
	"github.com/tokenmeter/tokenmeter/schemas/chtest"
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
	for _, want := range []string{"schema_migrations", "spend_1d", "spend_1d_mv", "spend_1m", "spend_1m_mv", "usage_events"} {
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
