package budget

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// alerterWorkflowCap is a runaway workflow's cap exactly as the alerter writes it to the
// bucket (alerter/alerting's TestRunawayWorkflowIsCappedUntilItResolves checks the same
// bytes), so that a change on either side breaks a test.
const alerterWorkflowCap = `{"name":"runaway-agents","scope":"workflow_id=wf-run","period_start":"2026-11-20T12:00:10Z","limit_usd":"20.000000000000",` +
	`"spent_usd":"21.000000000000","forecast_usd":"","forecast_method":"","state":"hard_capped","policy":"refuse",` +
	`"period_end":"2026-11-20T14:00:00Z","kind":"workflow","reason":"cost 21.00 USD over the last 1h (since 2026-11-20 11:50 UTC), ` +
	`5.25× the usual 4.00 USD per workflow of the feature (median of 5 workflows over 7 days); level 20.00 USD"}`

func TestAlerterWorkflowCap(t *testing.T) {
	at := time.Date(2026, 11, 20, 12, 5, 0, 0, time.UTC)
	e := NewEnforcer(func() time.Time { return at }, nil)
	e.apply("runaway/runaway-agents/0123456789abcdef01234567", jetstream.KeyValuePut, []byte(alerterWorkflowCap))
	want := `workflow "wf-run" is capped by runaway rule "runaway-agents": cost 21.00 USD over the last 1h ` +
		`(since 2026-11-20 11:50 UTC), 5.25× the usual 4.00 USD per workflow of the feature (median of 5 workflows over 7 days); ` +
		`level 20.00 USD; its calls are refused until the alert resolves (at the latest 2026-11-20T14:00:00Z)`
	if _, refusal := e.Decide(map[string]string{"team": "agents"}, "wf-run"); refusal != want {
		t.Errorf("refusal = %q\nwant %q", refusal, want)
	}
	if _, refusal := e.Decide(map[string]string{"workflow_id": "wf-run"}, "wf-other"); refusal != "" {
		t.Errorf("another workflow refused: %q", refusal)
	}
	at = time.Date(2026, 11, 20, 14, 0, 0, 0, time.UTC)
	if _, refusal := e.Decide(nil, "wf-run"); refusal != "" {
		t.Errorf("refused after period_end (a stopped alerter): %q", refusal)
	}
}
