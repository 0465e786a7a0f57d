package rules

import (
	"slices"
	"time"
)

// RunawayKind: one workflow's running cost against its feature's usual cost per workflow.
// These rules are File.Runaways, not File.Rules: they judge single workflows, which the
// per-minute windows of the other kinds do not keep.
const RunawayKind Kind = "runaway"

// Defaults and bounds of a runaway rule.
const (
	DefaultRunawayFactorMilli  = 5000
	DefaultRunawayWindow       = 24 * time.Hour
	DefaultRunawayDays         = 7
	DefaultRunawayMinWorkflows = 20
	maxRunawayWindow           = 7 * 24 * time.Hour
)

// Runaway fires for a workflow (grouped by feature and workflow_id) whose cost over the last
// Window reaches FactorMilli/1000 × the median cost per workflow of its feature — over the
// workflows whose first event lies in the last Days complete UTC days, and only when at least
// MinWorkflows of them are known — and at least MinPico. With Cap, the alerter publishes a
// hard cap for that workflow while the alert fires: the collector and the proxy refuse its
// calls until the alert resolves, which is when its cost over Window falls below the level
// (the workflow went quiet long enough), or when the rule goes away.
type Runaway struct {
	Name         string
	FactorMilli  int64
	MinPico      int64
	Window       time.Duration
	Days         int
	MinWorkflows int
	Cap          bool
	// KeepFiringFor: once firing, the cost must stay below the level this long before the
	// alert resolves (and a cap is lifted).
	KeepFiringFor time.Duration
	Severity      string
	Labels        map[string]string
	Description   string
}

func (p *parser) runaway(rr rawRule) Runaway {
	r := Runaway{Name: rr.Name, Cap: rr.Cap, Severity: rr.Severity, Labels: rr.Labels, Description: rr.Description}
	if !namePattern.MatchString(r.Name) {
		p.errorf("name: %q must match %s", r.Name, namePattern)
	}
	if rr.Measure != "" && Measure(rr.Measure) != Cost {
		p.errorf("measure: a runaway rule measures cost, not %q", rr.Measure)
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"group_by", len(rr.GroupBy) > 0}, {"above", rr.Above != ""}, {"share_of", rr.ShareOf != ""}, {"above_percent", rr.AbovePercent != ""},
		{"period", rr.Period != ""}, {"periods", rr.Periods != 0}, {"min_periods", rr.MinPeriods != 0}, {"score", rr.Score != ""},
		{"min_history", rr.MinHistory != 0}, {"growth_percent", rr.GrowthPercent != ""}, {"min_value", rr.MinValue != ""},
		{"min_share_percent", rr.MinSharePct != ""}, {"for", rr.For != ""}, {"resolve_percent", rr.ResolvePercent != nil}} {
		if f.set {
			p.errorf("%s: not a field of a runaway rule (it fires per workflow, by feature, on the first evaluation over the level)", f.name)
		}
	}
	if r.Severity == "" {
		r.Severity = "warning"
	}
	for k := range r.Labels {
		if !namePattern.MatchString(k) {
			p.errorf("labels: %q is not a label name", k)
		}
		if slices.Contains([]string{"alertname", "severity", "feature", "workflow_id"}, k) {
			p.errorf("labels: %q is set by the alerter itself", k)
		}
	}
	r.FactorMilli = p.decimal("factor", rr.Factor, 3, DefaultRunawayFactorMilli)
	if r.FactorMilli < 1000 || r.FactorMilli > 1_000_000 {
		p.errorf("factor: %s is outside [1, 1000]", FormatMilli(r.FactorMilli))
	}
	r.MinPico = p.decimal("min_usd", rr.MinUSD, 12, 0)
	r.Window = p.duration("window", rr.Window, DefaultRunawayWindow, time.Minute, maxRunawayWindow)
	if r.Window%time.Minute != 0 {
		p.errorf("window: %s is not a whole number of minutes", r.Window)
	}
	r.Days = orInt(rr.Days, DefaultRunawayDays)
	if r.Days < 1 || r.Days > maxDays {
		p.errorf("days: %d is outside [1, %d]", r.Days, maxDays)
	}
	r.MinWorkflows = orInt(rr.MinWorkflows, DefaultRunawayMinWorkflows)
	if r.MinWorkflows < 1 {
		p.errorf("min_workflows: %d is below 1", r.MinWorkflows)
	}
	r.KeepFiringFor = p.duration("keep_firing_for", rr.KeepFiringFor, 5*time.Minute, 0, maxFor)
	return r
}
