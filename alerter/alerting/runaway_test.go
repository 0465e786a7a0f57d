package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/runaway"
	"github.com/tokenmeter/tokenmeter/alerter/state"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

const runawayRules = `
builtins: {billing_drift: false, unpriced_model: false, untagged_share: false, team_spike: false, tier_fallback: false}
rules:
  - name: runaway-agents
    kind: runaway
    factor: "5"
    min_usd: "10"
    window: 1h
    min_workflows: 4
    keep_firing_for: 1m
    cap: true
    severity: page
route: {group_by: [alertname, workflow_id], group_wait: 0s, group_interval: 1s}
receivers:
  - name: oncall
    webhook: {url: "%s"}
`

// TestRunawayWorkflowIsCappedUntilItResolves: feature agents' completed workflows of the
// last 7 days cost 2, 3, 4, 5 and 100 USD (median 4: level max(5 × 4, 10) = 20 USD); a
// workflow still running at midnight, one of 8 days ago and another feature's are not
// counted. In the stream, wf-run costs 12 + 9 = 21 USD within the hour (from 11:50): one page
// naming the workflow, the feature and the baseline, and a hard cap for workflow_id=wf-run
// in tokenmeter_budgets; wf-ok (19 USD) and a feature without a baseline stay quiet. A
// restart while firing keeps the cap and pages nothing again. At 12:50 its first 12 USD have
// aged out of the window: after keep_firing_for the alert resolves once and the cap is
// deleted.
func TestRunawayWorkflowIsCappedUntilItResolves(t *testing.T) {
	hook := newWebhook(t)
	e := newEnv(t, strings.Replace(runawayRules, "%s", hook.srv.URL, 1))
	now := time.Date(2026, 11, 20, 12, 0, 10, 0, time.UTC)
	e.clock.Set(now)
	today := now.Truncate(24 * time.Hour)
	ctx := context.Background()
	exec := e.exec()
	event := workflowEvent(exec)
	a, stop := e.start() // applies the migrations
	day := func(n int, h time.Duration) time.Time { return today.AddDate(0, 0, -n).Add(h) }
	event("a1", "w1", "agents", day(1, 9*time.Hour), "1.5")
	event("a2", "w1", "agents", day(1, 10*time.Hour), "0.5") // w1: 2 USD over two events
	event("a3", "w2", "agents", day(2, 9*time.Hour), "3")
	event("a4", "w3", "agents", day(3, 9*time.Hour), "4")
	event("a5", "w4", "agents", day(6, 9*time.Hour), "5")
	event("a6", "w5", "agents", day(7, 0), "100")
	event("x1", "w6", "agents", day(8, 23*time.Hour), "1")      // began 8 days ago
	event("x2", "w7", "agents", day(1, 23*time.Hour), "0.01")   // still running at midnight…
	event("x3", "w7", "agents", today.Add(30*time.Minute), "1") // …into today
	event("x4", "w8", "search", day(1, 9*time.Hour), "0.001")   // another feature
	if err := a.RefreshRunaway(ctx); err != nil {
		t.Fatal(err)
	}
	publish(t, e.js, []batch.Row{
		{ID: "r1", Time: now.Add(-10 * time.Minute), Feature: "agents", WorkflowID: "wf-run", Priced: true, CostPico: 12 * rules.PicoPerUSD},
		{ID: "r2", Time: now.Add(-time.Minute), Feature: "agents", WorkflowID: "wf-run", Priced: true, CostPico: 9 * rules.PicoPerUSD},
		{ID: "r3", Time: now.Add(-time.Minute), Feature: "agents", WorkflowID: "wf-ok", Priced: true, CostPico: 19 * rules.PicoPerUSD},
		{ID: "r4", Time: now.Add(-time.Minute), Feature: "billing", WorkflowID: "wf-new", Priced: true, CostPico: 500 * rules.PicoPerUSD},
		{ID: "r5", Time: now.Add(-time.Minute), Feature: "agents", Priced: true, CostPico: 500 * rules.PicoPerUSD},
	})
	waitEvents(t, a, 5)
	e.tickAt(a, now)
	e.tickAt(a, now.Add(time.Second))
	if got, want := strings.Join(hook.statuses(), "; "), "firing runaway-agents/firing"; got != want {
		t.Fatalf("notifications = %q, want %q", got, want)
	}
	hook.mu.Lock()
	first := hook.got[0]["alerts"].([]any)[0].(map[string]any)
	hook.mu.Unlock()
	reason := "cost 21.00 USD over the last 1h (since 2026-11-20 11:50 UTC), 5.25× the usual 4.00 USD per workflow of the feature " +
		"(median of 5 workflows over 7 days); level 20.00 USD"
	labels, _ := json.Marshal(first["labels"])
	if got, want := string(labels), `{"alertname":"runaway-agents","feature":"agents","severity":"page","workflow_id":"wf-run"}`; got != want {
		t.Errorf("labels = %s, want %s", got, want)
	}
	ann := first["annotations"].(map[string]any)
	wantAnn := map[string]string{
		"summary":  "workflow wf-run (feature agents): " + reason + "; its calls are refused until the alert resolves",
		"value":    "21.00 USD",
		"baseline": "4.00 USD",
		"level":    "20.00 USD",
		"window":   "1h",
		"baseline_method": "runaway: the workflow's cost over the last 1h against the median cost per workflow of its feature, over the workflows " +
			"that began and ended in the last 7 complete UTC days (at least 4 of them); level max(median × 5, 10.00 USD)",
		"description": "a workflow costs many times what a workflow of its feature usually costs",
	}
	for k, want := range wantAnn {
		if ann[k] != want {
			t.Errorf("annotation %s = %q\nwant %q", k, ann[k], want)
		}
	}
	if len(ann) != len(wantAnn) {
		t.Errorf("annotations = %v, want exactly %v", ann, wantAnn)
	}

	bucket, err := e.js.KeyValue(ctx, kv.Budgets)
	if err != nil {
		t.Fatal(err)
	}
	key := kv.WorkflowCapKey("runaway-agents", "wf-run")
	entry, err := bucket.Get(ctx, key)
	if err != nil {
		t.Fatalf("cap %s: %v", key, err)
	}
	want := `{"name":"runaway-agents","scope":"workflow_id=wf-run","period_start":"2026-11-20T12:00:10Z","limit_usd":"20.000000000000",` +
		`"spent_usd":"21.000000000000","forecast_usd":"","forecast_method":"","state":"hard_capped","policy":"refuse",` +
		`"period_end":"2026-11-20T14:00:00Z","kind":"workflow","reason":"` + reason + `"}`
	if got := string(entry.Value()); got != want {
		t.Errorf("cap = %s\nwant  %s", got, want)
	}
	// wf-run, wf-ok and wf-new are held (an event without a workflow is not).
	held := "# HELP tokenmeter_alerter_runaway_workflows Workflows whose running cost the runaway rules hold.\n" +
		"# TYPE tokenmeter_alerter_runaway_workflows gauge\ntokenmeter_alerter_runaway_workflows 3\n"
	if err := testutil.GatherAndCompare(a.cfg.Registerer.(prometheus.Gatherer), strings.NewReader(held), "tokenmeter_alerter_runaway_workflows"); err != nil {
		t.Error(err)
	}
	keys := capKeys(t, bucket)
	if got := strings.Join(keys, ","); got != key {
		t.Errorf("workflow caps = %s, want only %s", got, key)
	}

	// A restart while firing: the cap stays as it was, nothing is paged again. The page is
	// recorded as sent at the evaluation after it.
	e.tickAt(a, now.Add(2*time.Second))
	alerts, err := e.js.KeyValue(ctx, kv.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := alerts.Get(ctx, first["fingerprint"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var rec state.Record
	if err := json.Unmarshal(st.Value(), &rec); err != nil || rec.State != "firing" || rec.Notified["oncall"].Status != "firing" {
		t.Fatalf("alert state before the restart: %s", st.Value())
	}
	stop()
	a, _ = e.start()
	if err := a.RefreshRunaway(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, a, 5)
	e.tickAt(a, now.Add(2*time.Second))
	if entry, err := bucket.Get(ctx, key); err != nil || string(entry.Value()) != want {
		t.Errorf("after a restart the cap is %v, %v", entry, err)
	}

	// At 12:50 the first 12 USD left the hour: 9 USD, below the level. keep_firing_for is
	// 1m: it resolves at the evaluation a minute later, and the cap goes.
	e.tickAt(a, now.Add(50*time.Minute))
	if got := capKeys(t, bucket); len(got) != 1 {
		t.Errorf("caps while clearing = %v, want the cap kept", got)
	}
	e.tickAt(a, now.Add(51*time.Minute+time.Second))
	if got, want := strings.Join(hook.statuses(), "; "), "firing runaway-agents/firing; resolved runaway-agents/resolved"; got != want {
		t.Fatalf("notifications = %q, want %q", got, want)
	}
	if _, err := bucket.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("cap after the alert resolved: %v, want it deleted", err)
	}
}

// exec runs a statement in the env's database ({db}), failing the test on an error.
func (e *env) exec() func(q string) {
	conn := chtest.Conn(e.t)
	return func(q string) {
		e.t.Helper()
		if err := conn.Exec(context.Background(), strings.ReplaceAll(q, "{db}", e.db)); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
}

// workflowEvent inserts into usage_events an event of workflow and feature at at, costing usd.
func workflowEvent(exec func(string)) func(id, workflow, feature string, at time.Time, usd string) {
	return func(id, workflow, feature string, at time.Time, usd string) {
		exec(fmt.Sprintf("INSERT INTO {db}.usage_events (event_id, time, ingested_at, provider, model, feature, workflow_id, cost_usd, priced) "+
			"SELECT '%s', toDateTime(%d), toDateTime(%d), 'openai', 'gpt-4o', '%s', '%s', toDecimal128('%s', 12), 1",
			id, at.Unix(), at.Unix(), feature, workflow, usd))
	}
}

func capKeys(t *testing.T, bucket jetstream.KeyValue) []string {
	t.Helper()
	keys, err := bucket.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range keys.Keys() {
		if strings.HasPrefix(k, kv.WorkflowCapPrefix) {
			out = append(out, k)
		}
	}
	return out
}

// TestRunawayHistoryFromClickHouse: the baselines are medians of integer picodollars (the
// mean of the two middle workflows for an even count, rounded down), re-rating included;
// the workflows' running costs at start-up come from usage_events, per minute, under the
// feature of each workflow's first event.
func TestRunawayHistoryFromClickHouse(t *testing.T) {
	e := newEnv(t, strings.Replace(runawayRules, "%s", "http://127.0.0.1:1/", 1))
	now := time.Date(2026, 11, 20, 12, 0, 10, 0, time.UTC)
	e.clock.Set(now)
	a, _ := e.start()
	ctx := context.Background()
	exec := e.exec()
	event := workflowEvent(exec)
	y := now.Truncate(24*time.Hour).AddDate(0, 0, -1)
	event("b1", "w1", "agents", y, "0.000000000001")
	event("b2", "w2", "agents", y, "0.000000000005")
	event("b3", "w3", "agents", y, "0.000000000009")
	event("b4", "w4", "agents", y, "7")
	event("b5", "w5", "search", y, "1.25")
	// w3 was re-rated from 9 to 2 pico: with w9's 4 the middle one is 4 pico (5 before).
	exec(fmt.Sprintf("INSERT INTO {db}.cost_corrections (event_id, time, kind, cost_usd) SELECT 'b3', toDateTime(%d), 'apply', toDecimal128('-0.000000000007', 12)", y.Unix()))
	// w8 began the day before: not one of the day's workflows.
	event("b10", "w8", "agents", y.Add(-12*time.Hour), "0.000000000001")
	event("b11", "w8", "agents", y, "0.000000000003")
	// w9's earlier event lies before the day's lookback, which is all the query reads (not
	// all of usage_events, as the view would): it counts as the day's, at its day's cost.
	event("b12", "w9", "agents", y.Add(-3*24*time.Hour), "100")
	event("b13", "w9", "agents", y, "0.000000000004")
	bs, err := readBaselines(ctx, a.ch, e.db, y, y.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]runaway.Baseline{"agents": {Median: 4, Workflows: 5}, "search": {Median: 1_250_000_000_000, Workflows: 1}}; !reflect.DeepEqual(bs, want) {
		t.Errorf("baselines = %+v, want %+v", bs, want)
	}

	event("c1", "wf-x", "billing", now.Add(-40*time.Minute), "3") // its first event: feature billing
	event("c2", "wf-x", "agents", now.Add(-40*time.Minute+20*time.Second), "4")
	event("c3", "wf-x", "agents", now.Add(-20*time.Minute), "5")
	event("c4", "wf-x", "agents", now.Add(-2*time.Hour), "100") // before the window
	event("c5", "", "agents", now.Add(-20*time.Minute), "100")  // no workflow
	f := runaway.NewFlows(time.Hour)
	if err := backfillFlows(ctx, a.ch, e.db, f, time.Hour, now); err != nil {
		t.Fatal(err)
	}
	r := &rules.Runaway{FactorMilli: 1000, Window: time.Hour, MinWorkflows: 1}
	got := f.Evaluate(r, map[string]runaway.Baseline{"billing": {Median: 1, Workflows: 1}}, now)
	want := []runaway.Result{{Workflow: "wf-x", Feature: "billing", Value: 12 * rules.PicoPerUSD, Level: 1, Baseline: runaway.Baseline{Median: 1, Workflows: 1},
		First: time.Date(2026, 11, 20, 11, 20, 0, 0, time.UTC)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("backfilled = %+v\nwant %+v", got, want)
	}

	// RefreshRunaway reads the rules' days once per UTC day: a workflow completed since is
	// counted the next day (with today's wf-x, whose first event, at 10:00, is agents'). Over
	// 7 days w8 (4 pico) and w9 (100 USD and 4 pico) began within them.
	refresh := func(at time.Time, want runaway.Baseline) {
		t.Helper()
		e.clock.Set(at)
		if err := a.RefreshRunaway(ctx); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		got := a.baselines[7]["agents"]
		a.mu.Unlock()
		if got != want {
			t.Errorf("at %s, agents' baseline = %+v, want %+v", at, got, want)
		}
	}
	refresh(now, runaway.Baseline{Median: 4, Workflows: 6}) // 1, 2, 4, 5, 7 USD, 100 USD
	event("b6", "w6", "agents", y, "0.000000000006")
	refresh(now.Add(time.Hour), runaway.Baseline{Median: 4, Workflows: 6})
	refresh(now.Add(12*time.Hour), runaway.Baseline{Median: 5, Workflows: 8}) // 1, 2, 4, 5, 6, 7 USD, 100 USD, 112 USD
}
