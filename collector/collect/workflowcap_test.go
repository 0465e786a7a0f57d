package collect

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
)

const workflowCapReason = `workflow "wf-run" is capped by runaway rule "runaway-agents": cost 21.00 USD over the last 1h; ` +
	`its calls are refused until the alert resolves (at the latest 2026-12-01T00:00:00Z)`

// A runaway workflow's cap refuses that workflow's events on POST /v1/events and through
// Accept (what OTLP calls), matched on workflow_id; the same team's other events pass, and
// tokenmeter_budget_refusals_total counts them under scope workflow_id.
func TestIngestRefusesCappedWorkflow(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, _ := cappedBy(t, "runaway/runaway-agents/x", kv.Budget{Name: "runaway-agents", Scope: "workflow_id=wf-run", PeriodStart: testNow.Add(-time.Hour),
		PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), LimitUSD: "20", SpentUSD: "21", State: kv.StateHardCapped,
		Policy: kv.PolicyRefuse, Kind: kv.KindWorkflow, Reason: "cost 21.00 USD over the last 1h"}, nil, "wf-run", Config{Registerer: reg})
	ctx := context.Background()

	only := `{"id":"w1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1},"workflow_id":"wf-run","tags":{"team":"agents"}}`
	res := post(t, c.Handler(), "application/x-ndjson", only)
	if want := mustJSON(t, failure{Error: workflowCapReason}); res.Code != http.StatusTooManyRequests || res.Body.String() != want {
		t.Errorf("capped workflow: %d %s, want 429 %s", res.Code, res.Body, want)
	}
	other := `{"id":"w2","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1},"workflow_id":"wf-other","tags":{"team":"agents"}}`
	res = post(t, c.Handler(), "application/x-ndjson", only+"\n"+other)
	var got accepted
	if err := json.Unmarshal(res.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if want := (accepted{Accepted: 1, Rejected: []event.Rejection{{Index: 0, ID: "w1", Error: "budget: " + workflowCapReason}}}); res.Code != http.StatusAccepted || !reflect.DeepEqual(got, want) {
		t.Errorf("mixed: %d %+v, want 202 %+v", res.Code, got, want)
	}

	u := func(id, workflow string) event.Usage {
		return event.Usage{ID: id, Time: testNow, Provider: "openai", Model: "gpt-4o", Usage: event.Tokens{Input: 1, Output: 1}, WorkflowID: workflow}
	}
	rejected, err := c.Accept(ctx, []event.Usage{u("w3", "wf-run"), u("w4", "")})
	if want := []event.Rejection{{Index: 0, ID: "w3", Error: "budget: " + workflowCapReason}}; err != nil || !reflect.DeepEqual(rejected, want) {
		t.Errorf("Accept = %+v, %v; want %+v", rejected, err, want)
	}
	if n, err := testutil.GatherAndCount(reg, "tokenmeter_budget_refusals_total"); err != nil || n != 1 {
		t.Fatalf("refusal series: %d, %v", n, err)
	}
	want := "# HELP tokenmeter_budget_refusals_total Events and calls refused by a hard cap, by the scope key of the cap (team, feature, cost_center, workflow_id).\n" +
		"# TYPE tokenmeter_budget_refusals_total counter\ntokenmeter_budget_refusals_total{scope=\"workflow_id\"} 3\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tokenmeter_budget_refusals_total"); err != nil {
		t.Error(err)
	}
}
