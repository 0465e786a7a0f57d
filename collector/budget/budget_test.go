package budget

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/natstest"
)

var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

func capped(name, scope, policy string) Record {
	return Record{Name: name, Scope: scope, PeriodStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), LimitUSD: "100.000000000000", SpentUSD: "105.000000000001",
		ForecastUSD: "150.000000000000", State: StateHardCapped, Policy: policy}
}

func put(t *testing.T, kv jetstream.KeyValue, r Record) {
	t.Helper()
	data, _ := json.Marshal(r)
	if _, err := kv.Put(context.Background(), r.Name, data); err != nil {
		t.Fatal(err)
	}
}

func watched(t *testing.T) (*Enforcer, jetstream.KeyValue) {
	t.Helper()
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := NewEnforcer(func() time.Time { return now }, nil)
	if err := e.Watch(ctx, js); err != nil {
		t.Fatal(err)
	}
	<-e.Synced()
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return e, kv
}

func TestEnforcerFollowsTheBucket(t *testing.T) {
	e, kv := watched(t)
	put(t, kv, capped("search-monthly", "team=search", PolicyRefuse))
	natstest.Eventually(t, 5*time.Second, "the cap reaches the enforcer", func() bool {
		_, over := e.Over(map[string]string{"team": "search"})
		return over
	})
	if _, over := e.Over(map[string]string{"team": "support"}); over {
		t.Error("support is not capped")
	}
	ok := capped("search-monthly", "team=search", PolicyRefuse)
	ok.State = "soft_cap"
	put(t, kv, ok)
	natstest.Eventually(t, 5*time.Second, "the lifted cap reaches the enforcer", func() bool {
		_, over := e.Over(map[string]string{"team": "search"})
		return !over
	})
	put(t, kv, capped("ml", "cost_center=ml", PolicyRefuse))
	natstest.Eventually(t, 5*time.Second, "ml capped", func() bool { _, o := e.Over(map[string]string{"cost_center": "ml"}); return o })
	if err := kv.Delete(context.Background(), "ml"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, "deleted budget lifted", func() bool { _, o := e.Over(map[string]string{"cost_center": "ml"}); return !o })
	if _, err := kv.Put(context.Background(), "junk", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	stale := capped("old", "team=search", PolicyRefuse)
	stale.PeriodEnd = now.Add(-time.Hour)
	put(t, kv, stale)
	put(t, kv, capped("sync-marker", "team=marker", PolicyRefuse))
	natstest.Eventually(t, 5*time.Second, "marker", func() bool { _, o := e.Over(map[string]string{"team": "marker"}); return o })
	if _, over := e.Over(map[string]string{"team": "search"}); over {
		t.Error("a record whose period ended still caps")
	}
}

func TestApplyRefusesOrFlagsWithBodyIndexes(t *testing.T) {
	e := NewEnforcer(func() time.Time { return now }, nil)
	e.apply("search-monthly", jetstream.KeyValuePut, mustJSON(capped("search-monthly", "team=search", PolicyRefuse)))
	e.apply("ads", jetstream.KeyValuePut, mustJSON(capped("ads", "feature=ads", PolicyFlag)))
	b := event.Batch{
		Events: []event.Usage{
			{ID: "a", Tags: map[string]string{"team": "search"}},
			{ID: "b", Tags: map[string]string{"team": "support", "feature": "ads"}},
			{ID: "c"},
			{ID: "d", Tags: map[string]string{"team": "search", "feature": "ads"}},
		},
		Rejected: []event.Rejection{{Index: 1, ID: "x", Error: "model: is required"}},
	}
	first, n := e.Apply(&b)
	want := `team "search" is over the hard cap of budget "search-monthly": 105.000000000001 USD spent of 100.000000000000 USD since 2026-11-01; its events are refused until 2026-12-01 or until the budget is raised`
	if n != 1 || first != want {
		t.Errorf("Apply = %q, %d; want %q, 1", first, n, want)
	}
	// "d" matches both budgets: the first by name ("ads", flag) wins.
	if len(b.Events) != 3 || b.Events[0].ID != "b" || b.Events[0].Tags[FlagTag] != "ads" || b.Events[1].ID != "c" ||
		b.Events[1].Tags != nil || b.Events[2].ID != "d" || b.Events[2].Tags[FlagTag] != "ads" {
		t.Errorf("events = %+v", b.Events)
	}
	if len(b.Rejected) != 2 || b.Rejected[0] != (event.Rejection{Index: 0, ID: "a", Error: "budget: " + want}) || b.Rejected[1].Index != 1 {
		t.Errorf("rejected = %+v", b.Rejected)
	}
	var nilE *Enforcer
	if _, n := nilE.Apply(&b); n != 0 {
		t.Error("a nil enforcer refused events")
	}
}

func mustJSON(r Record) []byte {
	data, _ := json.Marshal(r)
	return data
}
