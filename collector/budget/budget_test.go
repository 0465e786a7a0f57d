package budget

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

func capped(name, scope, policy string) kv.Budget {
	return kv.Budget{Name: name, Scope: scope, PeriodStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), LimitUSD: "100.000000000000", SpentUSD: "105.000000000001",
		ForecastUSD: "150.000000000000", State: kv.StateHardCapped, Policy: policy}
}

func put(t *testing.T, bucket jetstream.KeyValue, r kv.Budget) {
	t.Helper()
	data, _ := json.Marshal(r)
	if _, err := bucket.Put(context.Background(), r.Name, data); err != nil {
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
	bucket, err := js.KeyValue(ctx, kv.Budgets)
	if err != nil {
		t.Fatal(err)
	}
	return e, bucket
}

func TestEnforcerFollowsTheBucket(t *testing.T) {
	e, bucket := watched(t)
	put(t, bucket, capped("search-monthly", "team=search", kv.PolicyRefuse))
	testkit.Eventually(t, 5*time.Second, "the cap reaches the enforcer", func() bool {
		_, over := e.Over(map[string]string{"team": "search"}, "")
		return over
	})
	if _, over := e.Over(map[string]string{"team": "support"}, ""); over {
		t.Error("support is not capped")
	}
	ok := capped("search-monthly", "team=search", kv.PolicyRefuse)
	ok.State = "soft_cap"
	put(t, bucket, ok)
	testkit.Eventually(t, 5*time.Second, "the lifted cap reaches the enforcer", func() bool {
		_, over := e.Over(map[string]string{"team": "search"}, "")
		return !over
	})
	put(t, bucket, capped("ml", "cost_center=ml", kv.PolicyRefuse))
	testkit.Eventually(t, 5*time.Second, "ml capped", func() bool { _, o := e.Over(map[string]string{"cost_center": "ml"}, ""); return o })
	if err := bucket.Delete(context.Background(), "ml"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "deleted budget lifted", func() bool { _, o := e.Over(map[string]string{"cost_center": "ml"}, ""); return !o })
	if _, err := bucket.Put(context.Background(), "junk", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	stale := capped("old", "team=search", kv.PolicyRefuse)
	stale.PeriodEnd = now.Add(-time.Hour)
	put(t, bucket, stale)
	put(t, bucket, capped("sync-marker", "team=marker", kv.PolicyRefuse))
	testkit.Eventually(t, 5*time.Second, "marker", func() bool { _, o := e.Over(map[string]string{"team": "marker"}, ""); return o })
	if _, over := e.Over(map[string]string{"team": "search"}, ""); over {
		t.Error("a record whose period ended still caps")
	}
}

func TestApplyRefusesOrFlagsWithBodyIndexes(t *testing.T) {
	e := NewEnforcer(func() time.Time { return now }, nil)
	e.apply("search-monthly", jetstream.KeyValuePut, mustJSON(capped("search-monthly", "team=search", kv.PolicyRefuse)))
	e.apply("ads", jetstream.KeyValuePut, mustJSON(capped("ads", "feature=ads", kv.PolicyFlag)))
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
	if len(b.Events) != 3 || b.Events[0].ID != "b" || b.Events[0].Tags[kv.FlagTag] != "ads" || b.Events[1].ID != "c" ||
		b.Events[1].Tags != nil || b.Events[2].ID != "d" || b.Events[2].Tags[kv.FlagTag] != "ads" {
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

func mustJSON(r kv.Budget) []byte {
	data, _ := json.Marshal(r)
	return data
}

func workflowCap(id string) kv.Budget {
	return kv.Budget{Name: "runaway-agents", Scope: "workflow_id=" + id, PeriodStart: now.Add(-time.Hour), PeriodEnd: now.Add(23 * time.Hour),
		State: kv.StateHardCapped, Policy: kv.PolicyRefuse, Kind: kv.KindWorkflow,
		Reason: "running cost 12.500000 USD in 24h is 25.0× the feature's median of 0.500000 USD per workflow (at least 5× and 10.000000 USD)"}
}

func TestWorkflowCapRefusesOnlyThatWorkflow(t *testing.T) {
	e, bucket := watched(t)
	put(t, bucket, workflowCap("wf-7"))
	testkit.Eventually(t, 5*time.Second, "the workflow cap reaches the enforcer", func() bool {
		_, over := e.Over(nil, "wf-7")
		return over
	})
	want := `workflow "wf-7" is capped by runaway rule "runaway-agents": running cost 12.500000 USD in 24h is 25.0× the feature's median of 0.500000 USD per workflow (at least 5× and 10.000000 USD); its calls are refused until the alert resolves (at the latest 2026-11-21T11:00:00Z)`
	// Matched on the workflow id, exactly; a tag named workflow_id is not the workflow.
	for _, c := range []struct {
		tags     map[string]string
		workflow string
		refusal  string
	}{
		{nil, "wf-7", want},
		{map[string]string{"team": "search"}, "wf-7", want},
		{nil, "wf-8", ""},
		{nil, "WF-7", ""},
		{map[string]string{"workflow_id": "wf-7"}, "", ""},
		{nil, "", ""},
	} {
		if _, refusal := e.Decide(c.tags, c.workflow); refusal != c.refusal {
			t.Errorf("Decide(%v, %q) = %q, want %q", c.tags, c.workflow, refusal, c.refusal)
		}
	}
	b := event.Batch{Events: []event.Usage{{ID: "a", WorkflowID: "wf-7"}, {ID: "b", WorkflowID: "wf-1"}, {ID: "c"}}}
	first, n := e.Apply(&b)
	if first != want || n != 1 || len(b.Events) != 2 || b.Events[0].ID != "b" || b.Events[1].ID != "c" ||
		len(b.Rejected) != 1 || b.Rejected[0] != (event.Rejection{Index: 0, ID: "a", Error: "budget: " + want}) {
		t.Errorf("Apply = %q, %d; events %+v, rejected %+v", first, n, b.Events, b.Rejected)
	}
	reg := prometheus.NewRegistry()
	if err := e.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := e.Register(reg); err != nil {
		t.Errorf("registering the same enforcer twice: %v", err)
	}
	if got := testutil.ToFloat64(e.refusals.WithLabelValues("workflow_id")); got != 3 {
		t.Errorf("refusals{scope=workflow_id} = %v, want 3", got)
	}
	if err := bucket.Delete(context.Background(), "runaway-agents"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the resolved workflow is lifted", func() bool { _, o := e.Over(nil, "wf-7"); return !o })
}

// TestUnknownCapKindsAreIgnored: a record of a kind the enforcer does not know, or a workflow
// record without a workflow scope, caps nothing — it is not read as a tag scope.
func TestUnknownCapKindsAreIgnored(t *testing.T) {
	e := NewEnforcer(func() time.Time { return now }, nil)
	future := capped("session-cap", "team=search", kv.PolicyRefuse)
	future.Kind = "session"
	e.apply("session-cap", jetstream.KeyValuePut, mustJSON(future))
	odd := workflowCap("x")
	odd.Scope = "team=search"
	e.apply("odd", jetstream.KeyValuePut, mustJSON(odd))
	empty := workflowCap("")
	e.apply("empty", jetstream.KeyValuePut, mustJSON(empty))
	if len(e.capped) != 0 {
		t.Errorf("capped = %v, want none", e.capped)
	}
	if _, refusal := e.Decide(map[string]string{"team": "search"}, ""); refusal != "" {
		t.Errorf("refused %q", refusal)
	}
}

// TestWorkflowCapOlderCollectors: collectors before record kinds existed read every
// hard-capped record as a tag scope. A workflow cap is "workflow_id=<id>": to them it caps
// only events carrying a tag workflow_id=<id>, which events do not (the workflow id is a field
// of its own) — never every event. olderOver is their matching, as it was.
func TestWorkflowCapOlderCollectors(t *testing.T) {
	var older struct {
		Scope, State string
		PeriodEnd    time.Time `json:"period_end"`
	}
	if err := json.Unmarshal(mustJSON(workflowCap("wf-7")), &older); err != nil {
		t.Fatal(err)
	}
	olderOver := func(tags map[string]string) bool {
		k, v, ok := strings.Cut(older.Scope, "=")
		if older.State != kv.StateHardCapped || !ok || !(older.PeriodEnd.IsZero() || now.Before(older.PeriodEnd)) {
			return false
		}
		t, ok := tags[k]
		return ok && event.NormalizeTag(t, event.NormalizedTagLen) == event.NormalizeTag(v, event.NormalizedTagLen)
	}
	for _, tags := range []map[string]string{nil, {}, {"team": "search"}, {"team": "wf-7", "feature": "wf-7"}, {"workflow_id": "wf-8"}} {
		if olderOver(tags) {
			t.Errorf("an older collector refuses tags %v", tags)
		}
	}
}

// TestFollowWaitsForJetStream starts the enforcer before its NATS server, as a collector
// started beside a JetStream cluster that is still electing its leaders does: Follow keeps
// trying, and the caps are enforced once the bucket answers.
func TestFollowWaitsForJetStream(t *testing.T) {
	dir := t.TempDir()
	first := natstest.Start(t, dir, -1)
	port := natstest.Port(t, first)
	first.Shutdown()
	first.WaitForShutdown()

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var log testkit.SyncBuffer
	e := NewEnforcer(func() time.Time { return now }, slog.New(slog.NewTextHandler(&log, nil)))
	e.retry = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go e.Follow(ctx, js)
	testkit.Eventually(t, 10*time.Second, "a failed attempt logged", func() bool {
		return strings.Contains(log.String(), "budget hard caps not loaded yet; trying again")
	})

	natstest.Start(t, dir, port)
	select {
	case <-e.Synced():
	case <-time.After(20 * time.Second):
		t.Fatalf("the caps were not loaded 20 s after JetStream came up; log:\n%s", log.String())
	}
	bucket, err := js.KeyValue(ctx, kv.Budgets)
	if err != nil {
		t.Fatal(err)
	}
	put(t, bucket, capped("search-monthly", "team=search", kv.PolicyRefuse))
	testkit.Eventually(t, 5*time.Second, "the cap reaches the enforcer", func() bool {
		_, over := e.Over(map[string]string{"team": "search"}, "")
		return over
	})
}
