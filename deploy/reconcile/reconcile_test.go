package reconcile

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

func reconcileRows(ids ...string) []batch.Row {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := make([]batch.Row, len(ids))
	for i, id := range ids {
		rows[i] = batch.Row{ID: id, Time: at, Received: at, Provider: "openai", Model: "gpt-4o", ServiceTier: "standard", Status: "ok"}
	}
	return rows
}

// Check finds an accepted id missing from ClickHouse, an id stored twice, an id stored
// that USAGE_RAW never held, and counts an undecodable raw message, per partition.
func TestCheck(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	js := streamtest.Streams(t, natstest.Connect(t, s), nil)
	ctx := context.Background()
	publish := func(subject string, data []byte) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(stream.HeaderSchema, batch.SchemaName)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	encode := func(ids ...string) []byte {
		data, err := batch.Encode(reconcileRows(ids...))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	publish(stream.RawSubject(0), encode("a", "b"))                   // seq 1
	publish(stream.RawSubject(1), encode("d"))                        // seq 2
	publish(stream.RawSubject(1), []byte("not a batch"))              // seq 3
	publish(stream.EmitterRawSubject(0, "billing"), encode("c", "a")) // seq 4: a again, as a retry would; from an emitter
	publish(stream.EmitterRawSubject(1, "billing"), encode("e"))      // seq 5

	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	w := seedInserter(t, db)
	for p, ids := range map[int][]string{0: {"a", "b", "b"}, 1: {"d", "e", "x"}} {
		if err := w.Insert(ctx, p, reconcileRows(ids...)); err != nil {
			t.Fatal(err)
		}
	}

	parts, err := Check(ctx, js, conn, db, 2)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteReport(&b, parts); err != nil {
		t.Fatal(err)
	}
	want := `partition raw sequences         messages undecodable  accepted    stored displaced  missing   merged  doubled  unknown
0         1-4                          2           0         3         2         0        1        0        1        0
1         2-5                          3           1         2         3         0        0        0        0        1
partition 0 missing: c
partition 0 doubled: b
partition 1 unknown: x
`
	if got := b.String(); got != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}
	if parts[0].OK() || !parts[1].OK() || parts[0].Rows != 3 || parts[1].Rows != 3 {
		t.Errorf("OK() = %v, %v; rows %d, %d; want false, true; 3, 3", parts[0].OK(), parts[1].OK(), parts[0].Rows, parts[1].Rows)
	}
	if err := Err(parts); err == nil || err.Error() != "partition 0: 1 accepted ids missing from usage_events, 1 stored more than once" {
		t.Errorf("Err = %v", err)
	}
}

// Two reports of one provider call under different ids: the aggregator keeps one, so the
// other is merged, not missing; the same call stored under two ids is doubled, unless one of
// them was displaced by the other (it stays stored, but no longer counts).
func TestCheckCalls(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	js := streamtest.Streams(t, natstest.Connect(t, s), nil)
	ctx := context.Background()
	withResponse := func(ids ...string) []batch.Row {
		rows := reconcileRows(ids...)
		for i := range rows {
			rows[i].ResponseID = "resp-" + strings.TrimRight(rows[i].ID, "0123456789")
		}
		return rows
	}
	// x1 and x2 report one call (response id "resp-x"), y1 and y2 another, w1 and w2 another;
	// z a fourth.
	calls := withResponse("x1", "x2", "y1", "y2", "z", "w1", "w2")
	data, err := batch.Encode(calls)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(stream.RawSubject(0))
	m.Data = data
	m.Header.Set(stream.HeaderSchema, batch.SchemaName)
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	// x1 kept, x2 merged into it; y1 and y2 both stored: the call y is doubled; z alone; w1
	// stored, then displaced by w2.
	if err := seedInserter(t, db).Insert(ctx, 0, withResponse("x1", "y1", "y2", "z", "w1", "w2")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "INSERT INTO "+db+".cost_corrections (kind, event_id, time) SELECT 'displaced', event_id, time FROM "+db+".usage_events WHERE event_id = 'w1'"); err != nil {
		t.Fatal(err)
	}
	parts, err := Check(ctx, js, conn, db, 1)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteReport(&b, parts); err != nil {
		t.Fatal(err)
	}
	want := `partition raw sequences         messages undecodable  accepted    stored displaced  missing   merged  doubled  unknown
0         1-1                          1           0         7         6         1        0        1        1        0
partition 0 merged: x2
partition 0 doubled: y2
`
	if got := b.String(); got != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}
}

// An empty stream and an empty table reconcile to zeros.
func TestCheckEmpty(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	js := streamtest.Streams(t, natstest.Connect(t, s), nil)
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(context.Background(), conn, db); err != nil {
		t.Fatal(err)
	}
	parts, err := Check(context.Background(), js, conn, db, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Fatalf("%d partitions, want 3", len(parts))
	}
	for _, p := range parts {
		if p.Messages != 0 || p.Accepted != 0 || p.Stored != 0 || p.Rows != 0 || p.MissingN+p.DoubledN+p.UnknownN != 0 || !p.OK() {
			t.Errorf("partition %d: %+v, want zeros", p.Partition, p)
		}
	}
	if err := Err(parts); err != nil {
		t.Errorf("Err = %v, want nil", err)
	}
}

// seedInserter writes rows straight to ClickHouse, as the aggregator would.
func seedInserter(tb testing.TB, db string) *chwrite.Inserter {
	tb.Helper()
	in, err := chwrite.NewInserterForDSN(chtest.DSN(), db)
	if err != nil {
		tb.Fatal(err)
	}
	return in
}

// Run connects by URL and DSN, as the command does, and finds what Check finds.
func TestRun(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	js := streamtest.Streams(t, natstest.Connect(t, s), nil)
	ctx := context.Background()
	data, err := batch.Encode(reconcileRows("a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(stream.RawSubject(1))
	m.Data = data
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if err := seedInserter(t, db).Insert(ctx, 1, reconcileRows("a", "b")); err != nil {
		t.Fatal(err)
	}
	parts, err := Run(ctx, Config{NATSURL: fmt.Sprintf("nats://127.0.0.1:%d", natstest.Port(t, s)), ClickHouseDSN: chtest.DSN(), Database: db, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[1].Messages != 1 || parts[1].FirstSeq != 1 || parts[1].Accepted != 2 || parts[1].Stored != 2 || parts[1].Rows != 2 || Err(parts) != nil {
		t.Errorf("Run = %+v, want partition 1 with one message of 2 ids, both stored once", parts)
	}
}

// Validate names every bad field; Run refuses an invalid config before touching the network
// and says which connection failed.
func TestConfig(t *testing.T) {
	err := Config{ClickHouseDSN: "http://[::1", Partitions: 0}.Validate()
	want := "-nats is empty\n" + `-clickhouse "http://[::1": `
	if err == nil || !strings.HasPrefix(err.Error(), want) ||
		!strings.HasSuffix(err.Error(), "\n-database is empty\n-partitions (0) must be between 1 and 65536") {
		t.Errorf("Validate = %v", err)
	}
	if err := (Config{NATSURL: "nats://127.0.0.1:4222", ClickHouseDSN: "clickhouse://127.0.0.1:9000", Database: "tokenmeter", Partitions: 65536}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if err := (Config{NATSURL: "nats://x", ClickHouseDSN: "clickhouse://127.0.0.1:9000", Database: "d", Partitions: 65537}).Validate(); err == nil || err.Error() != "-partitions (65537) must be between 1 and 65536" {
		t.Errorf("65537 partitions: %v", err)
	}
	_, err = Run(context.Background(), Config{NATSURL: "nats://127.0.0.1:1", ClickHouseDSN: "clickhouse://127.0.0.1:9000", Database: "d", Partitions: 4})
	if err == nil || !strings.HasPrefix(err.Error(), "connect to NATS nats://127.0.0.1:1: ") {
		t.Errorf("unreachable NATS: %v", err)
	}
}
