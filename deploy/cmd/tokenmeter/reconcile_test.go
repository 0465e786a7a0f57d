package main

import (
	"bytes"
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

// TestReconcileCommand runs "tokenmeter reconcile" against a NATS server (by URL) and the
// local ClickHouse: a clean state prints the report and succeeds; an accepted id that never
// reached usage_events, and one stored twice, fail it.
func TestReconcileCommand(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	js := streamtest.Streams(t, natstest.Connect(t, s), nil)
	ctx := context.Background()
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	rows := func(ids ...string) []batch.Row {
		out := make([]batch.Row, len(ids))
		for i, id := range ids {
			out[i] = batch.Row{ID: id, Time: at, Received: at, Provider: "openai", Model: "gpt-4o", ServiceTier: "standard", Status: "ok"}
		}
		return out
	}
	publish := func(p int, ids ...string) {
		t.Helper()
		data, err := batch.Encode(rows(ids...))
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(stream.RawSubject(p))
		m.Data = data
		m.Header.Set(stream.HeaderSchema, batch.SchemaName)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	w, err := chwrite.NewInserterForDSN(chtest.DSN(), db)
	if err != nil {
		t.Fatal(err)
	}
	insert := func(p int, ids ...string) {
		t.Helper()
		if err := w.Insert(ctx, p, rows(ids...)); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-nats", fmt.Sprintf("nats://127.0.0.1:%d", natstest.Port(t, s)), "-clickhouse", chtest.DSN(), "-database", db, "-partitions", "2"}

	publish(0, "a", "b")
	publish(1, "c")
	insert(0, "a", "b")
	insert(1, "c")
	var stdout, stderr bytes.Buffer
	if err := runReconcile(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("clean state: %v", err)
	}
	want := `partition raw sequences         messages undecodable  accepted    stored displaced  missing   merged  doubled  unknown
0         1-1                          1           0         2         2         0        0        0        0        0
1         2-2                          1           0         1         1         0        0        0        0        0
`
	if stdout.String() != want {
		t.Errorf("clean report:\n%s\nwant:\n%s", stdout.String(), want)
	}

	publish(1, "d")
	insert(0, "b")
	stdout.Reset()
	err = runReconcile(ctx, args, &stdout, &stderr)
	if err == nil || err.Error() != "partition 0: 0 accepted ids missing from usage_events, 1 stored more than once\n"+
		"partition 1: 1 accepted ids missing from usage_events, 0 stored more than once" {
		t.Errorf("missing and doubled: err = %v", err)
	}
	want = `partition raw sequences         messages undecodable  accepted    stored displaced  missing   merged  doubled  unknown
0         1-1                          1           0         2         2         0        0        0        1        0
1         2-3                          2           0         2         1         0        1        0        0        0
partition 0 doubled: b
partition 1 missing: d
`
	if stdout.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", stdout.String(), want)
	}
	// Through the dispatcher: the same failure is exit status 1.
	if code := run(append([]string{"reconcile"}, args...)); code != 1 {
		t.Errorf("tokenmeter reconcile exit status %d, want 1", code)
	}
}

// Bad flags are refused before anything is contacted, each named.
func TestReconcileFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runReconcile(context.Background(), []string{"-nats", "", "-database", "", "-partitions", "0", "-timeout", "0s", "extra"}, &stdout, &stderr)
	want := `unexpected arguments ["extra"]` + "\n-timeout (0s) must be positive\n-nats is empty\n-database is empty\n-partitions (0) must be between 1 and 65536"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want\n%s", err, want)
	}
	err = runReconcile(context.Background(), []string{"-nats", "nats://127.0.0.1:1"}, &stdout, &stderr)
	if err == nil || !strings.HasPrefix(err.Error(), "connect to NATS nats://127.0.0.1:1: ") {
		t.Errorf("unreachable NATS: err = %v", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.String())
	}
}
