// Package kv names the JetStream key-value buckets the stages share and defines the records
// in them: the alerter writes budget states and alerts, the collector and the proxy enforce the
// budgets' hard caps, the dashboard shows both. Amounts are USD with 12 decimals as exact
// decimal text, never floats.
package kv

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// The buckets.
const (
	// Budgets holds one Budget per budget, keyed by its name, and one per capped runaway
	// workflow, keyed by WorkflowCapKey.
	Budgets = "tokenmeter_budgets"
	// Alerts holds one Alert per alert, keyed by the alert's fingerprint.
	Alerts = "tokenmeter_alerts"
	// Silences holds the alerter's silences, one per silence id.
	Silences = "tokenmeter_silences"
	// Leases holds the aggregator's partition leases, one per partition.
	Leases = "tokenmeter_aggregator_leases"
)

// Budget states.
const (
	StateOK         = "ok"
	StateSoft       = "soft_cap"    // at least one soft cap reached
	StateHardCapped = "hard_capped" // the hard cap is reached: the collector applies the policy
)

// What the collector does with the events of a hard-capped scope.
const (
	PolicyRefuse = "refuse" // turn them away (429, or a per-event rejection)
	PolicyFlag   = "flag"   // accept them tagged FlagTag=<budget name>
)

// FlagTag is the tag added to the events of a capped scope under PolicyFlag.
const FlagTag = "budget_exceeded"

// Record kinds. A budget's record has no kind (older alerters write none).
const (
	KindBudget = ""
	// KindWorkflow caps one runaway workflow: Scope is "workflow_id=<id>", matched on the
	// event's workflow id (not a tag), refused until the alert resolves. Collectors that do not
	// know a kind ignore the record, so a newer alerter cannot make an older collector refuse
	// what it did not mean to.
	KindWorkflow = "workflow"
)

// WorkflowScope is the scope key of a KindWorkflow record.
const WorkflowScope = "workflow_id"

// WorkflowCapPrefix starts the keys of workflow caps ("runaway/<rule>/<hash of the id>");
// budget names cannot hold a "/", so the two never collide.
const WorkflowCapPrefix = "runaway/"

// WorkflowCapKey is the key of rule's cap on workflow.
func WorkflowCapKey(rule, workflow string) string {
	h := sha256.Sum256([]byte(workflow))
	return WorkflowCapPrefix + rule + "/" + hex.EncodeToString(h[:12])
}

// Budget is a budget's state, or a runaway workflow's cap.
type Budget struct {
	Name        string    `json:"name"`
	Scope       string    `json:"scope"` // "team=search"
	PeriodStart time.Time `json:"period_start"`
	LimitUSD    string    `json:"limit_usd"`
	SpentUSD    string    `json:"spent_usd"`
	ForecastUSD string    `json:"forecast_usd"`
	// The seasonal forecast's 90 % interval and its probability of ending over the limit
	// ("0.734"); empty under the run-rate method, which has neither.
	ForecastLowUSD    string `json:"forecast_low_usd,omitempty"`
	ForecastHighUSD   string `json:"forecast_high_usd,omitempty"`
	ExceedProbability string `json:"exceed_probability,omitempty"`
	// ForecastMethod is "seasonal" or "run_rate".
	ForecastMethod string `json:"forecast_method"`
	State          string `json:"state"`
	// Policy and PeriodEnd complete the contract for the collector: a record whose period has
	// ended is ignored, so a stopped alerter cannot keep a team capped into the next month.
	Policy    string    `json:"policy"`
	PeriodEnd time.Time `json:"period_end"`
	// Kind is KindBudget or KindWorkflow; Reason says, for a workflow, why it is capped.
	Kind   string `json:"kind,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Alert is what every reader may rely on in an alert's record; the alerter keeps more in it
// for itself (when it fired, whom it notified).
type Alert struct {
	Rule   string            `json:"rule"`
	Labels map[string]string `json:"labels"`
	// State is "pending", "firing" or "resolved"; the first two are active.
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Value is the measure's value as exact decimal text.
	Value   string    `json:"value"`
	Summary string    `json:"summary"`
	Updated time.Time `json:"updated"`
}
