package proxy

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/kv"
)

// A runaway workflow capped by the alerter: its calls (X-Tokenmeter-Workflow-Id) are refused
// before they are forwarded, with the rule and the reason; the same team's other workflows,
// and calls without a workflow, pass.
func TestWorkflowCapRefusesOnlyThatWorkflow(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, counted(&calls))
	enf := enforce(t, h, "runaway/runaway-agents/x", kv.Budget{Name: "runaway-agents", Scope: "workflow_id=wf-run", PeriodStart: h.now.Add(-time.Minute),
		PeriodEnd: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), LimitUSD: "20", SpentUSD: "21", State: kv.StateHardCapped,
		Policy: kv.PolicyRefuse, Kind: kv.KindWorkflow, Reason: "cost 21.00 USD over the last 1h, 5.25× the usual 4.00 USD"}, nil, "wf-run")
	h.proxy.cfg.Budgets = enf

	const reason = `tokenmeter proxy: workflow \"wf-run\" is capped by runaway rule \"runaway-agents\": cost 21.00 USD over the last 1h, ` +
		`5.25× the usual 4.00 USD; its calls are refused until the alert resolves (at the latest 2099-01-01T00:00:00Z)`
	want := `{"error":{"code":"budget_exceeded","message":"` + reason + `","type":"insufficient_quota"}}` + "\n"
	if status, body := send(t, "POST", h.srv.URL+"/openai/v1/chat/completions", HeaderWorkflowID, "wf-run", HeaderTeam, "agents"); status != http.StatusTooManyRequests || body != want {
		t.Errorf("capped workflow: %d %s, want 429 %s", status, body, want)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the upstream got %d calls, want none", n)
	}
	for i, header := range [][]string{{HeaderWorkflowID, "wf-other", HeaderTeam, "agents"}, {HeaderTeam, "agents"}} {
		if status, body := send(t, "POST", h.srv.URL+"/openai/v1/chat/completions", header...); status != http.StatusOK || calls.Load() != int32(i+1) {
			t.Errorf("%v: %d %s, %d upstream calls; want 200, %d", header, status, body, calls.Load(), i+1)
		}
	}
	if rows := h.events(2); rows[0].WorkflowID != "wf-other" || rows[1].WorkflowID != "" {
		t.Errorf("events of workflows %q and %q, want wf-other's, then one without", rows[0].WorkflowID, rows[1].WorkflowID)
	}
}
