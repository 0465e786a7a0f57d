package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/alerter/dispatch"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

func TestStoreRoundTripAndRefusesGarbage(t *testing.T) {
	ctx := context.Background()
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, js, jetstream.FileStorage)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty bucket: %v, %v", got, err)
	}
	at := time.Date(2026, 2, 2, 11, 8, 15, 0, time.UTC)
	rec := Record{Alert: kv.Alert{Rule: "team_spike", Labels: map[string]string{"team": "search"}, State: "firing", Since: at, Value: "4.520000000000",
		Summary: "s", Updated: at}, FiredAt: at, Notified: map[string]dispatch.Sent{"oncall": {Status: "firing", At: at}}}
	if err := s.Put(ctx, "fp1", rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx)
	if err != nil || len(got) != 1 || got["fp1"].Value != "4.520000000000" || !got["fp1"].Notified["oncall"].At.Equal(at) || got["fp1"].Labels["team"] != "search" {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	bucket, _ := js.KeyValue(ctx, kv.Alerts)
	entry, _ := bucket.Get(ctx, "fp1")
	for _, field := range []string{`"rule":"team_spike"`, `"labels":{"team":"search"}`, `"state":"firing"`, `"since":"2026-02-02T11:08:15Z"`,
		`"value":"4.520000000000"`, `"summary":"s"`, `"updated":"2026-02-02T11:08:15Z"`} {
		if !strings.Contains(string(entry.Value()), field) {
			t.Errorf("stored JSON %s lacks %s", entry.Value(), field)
		}
	}
	if _, err := bucket.Put(ctx, "fp2", []byte("{broken")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx); err == nil || !strings.Contains(err.Error(), "decode alert fp2 from tokenmeter_alerts") {
		t.Errorf("Load with a broken record: %v", err)
	}
	if err := s.Delete(ctx, "fp2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "never-there"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	if got, err := s.Load(ctx); err != nil || len(got) != 1 {
		t.Errorf("after delete: %v, %v", got, err)
	}
}
