// Package rules reads the alerter's YAML file: spend rules (threshold, rate of change against
// a trailing baseline, slow creep, seasonal anomaly), budgets, notification receivers and
// their routing, and silences. Parse validates everything and reports every problem at once,
// each naming the rule and the field; the alerter refuses a broken file and keeps the rules it
// already runs.
//
// Amounts are exact: USD amounts become integer picodollars, counts stay integers, factors
// and scores are integers in thousandths. Nothing is a float.
package rules

import (
	"time"
)

// Kind is what a rule compares.
type Kind string

// Rule kinds.
const (
	// Threshold: the measure summed over the window (rolling, or the calendar day so far)
	// is above a value, or above a share of another measure's total.
	Threshold Kind = "threshold"
	// Change: the measure over the window against the same window one period ago, two
	// periods ago, … (e.g. the same time of the week over 4 weeks): fires when the current
	// value is at least factor × the median of those and beyond score robust deviations
	// (median absolute deviation) from it. For sudden spikes.
	Change Kind = "change"
	// Creep: the sum over the last 7 complete days against the 7 days before, every day;
	// fires when it grew more than growth_percent on each of the days that `for` spans.
	// For slow growth that no spike rule sees.
	Creep Kind = "creep"
	// Anomaly: the measure of the current hour against the same hour of the day on past
	// days of the same type (weekday or weekend) — a seasonal baseline by hour of day and
	// day of week — with the same robust median/MAD score as Change.
	Anomaly Kind = "anomaly"
)

// Measure is what a rule sums.
type Measure string

// Measures. Money measures are in picodollars inside the alerter and in USD in the file.
const (
	Cost Measure = "cost"
	// UntaggedCost is the cost of events not fully attributed, as the tag_coverage view
	// defines it: team unset or "unallocated", or feature, env or cost_center unset.
	UntaggedCost      Measure = "untagged_cost"
	Requests          Measure = "requests"
	UnpricedEvents    Measure = "unpriced_events"
	InputTokens       Measure = "input_tokens"
	OutputTokens      Measure = "output_tokens"
	CachedInputTokens Measure = "cached_input_tokens"
	CacheWriteTokens  Measure = "cache_write_tokens"
	ReasoningTokens   Measure = "reasoning_tokens"
	// TierFallbackEvents counts events of the batch, flex or priority tier priced at standard
	// prices because their model has no price for the tier (usage_events.tier_fallback).
	TierFallbackEvents Measure = "tier_fallback_events"
)

// Measures lists every measure, in a stable order.
var Measures = []Measure{Cost, UntaggedCost, Requests, UnpricedEvents, InputTokens, OutputTokens,
	CachedInputTokens, CacheWriteTokens, ReasoningTokens, TierFallbackEvents}

// Money reports whether the measure is an amount of money (picodollars).
func (m Measure) Money() bool { return m == Cost || m == UntaggedCost }

// Dimensions a rule may group by: the columns of spend_1m, so that baselines can be loaded
// from ClickHouse exactly as the stream feeds them.
var Dimensions = []string{"team", "feature", "env", "cost_center", "traffic", "provider", "model", "model_priced"}

// Rule is one validated rule. Amounts are in the measure's unit: picodollars for money,
// plain counts otherwise.
type Rule struct {
	Name    string
	Kind    Kind
	Measure Measure
	GroupBy []string
	// Window is the span summed (Threshold, Change); CalendarDay sums the UTC day so far
	// instead (Threshold only).
	Window      time.Duration
	CalendarDay bool

	// Threshold: Above is the value to exceed; or, when ShareOf is set, AboveShareMilli is
	// the share of ShareOf's total (all groups) to exceed, in thousandths of a percent.
	Above           int64
	ShareOf         Measure
	AboveShareMilli int64

	// Change: the baseline is the same window Period earlier, for Periods periods; at least
	// MinPeriods of them must lie within the group's known history.
	Period     time.Duration
	Periods    int
	MinPeriods int
	// Change and Anomaly: the level to reach is max(median × Factor, median + Score × 1.4826 ×
	// MAD); both in thousandths.
	FactorMilli int64
	ScoreMilli  int64
	// Anomaly: the baseline is the same hour of the day over the last Days days of the same
	// type (weekday/weekend); at least MinHistory such days must be known.
	Days       int
	MinHistory int
	// Creep: week-over-week growth to exceed, in thousandths of a percent.
	GrowthMilli int64

	// Floors: a group fires only when its value is at least MinValue and at least
	// MinShareMilli thousandths of a percent of the measure's total over all groups.
	MinValue      int64
	MinShareMilli int64
	// For: the condition must hold on every complete step (minute; hour for Anomaly; day
	// for Creep) over this span before the alert fires. 0 fires on the first evaluation,
	// including the bucket still filling.
	For time.Duration
	// KeepFiringFor: once firing, the resolve condition must hold this long before the alert
	// resolves.
	KeepFiringFor time.Duration
	// ResolvePercent: hysteresis; the alert resolves only when the value drops below this
	// percentage of the level that fired it.
	ResolvePercent int64

	Severity string
	Labels   map[string]string
	// Description is a sentence for the notification.
	Description string
}

// Step is the bucket over which the rule's `for` counts complete evaluations.
func (r *Rule) Step() time.Duration {
	switch r.Kind {
	case Anomaly:
		return time.Hour
	case Creep:
		return 24 * time.Hour
	}
	return time.Minute
}

// ForSteps is the number of complete steps `for` spans.
func (r *Rule) ForSteps() int64 {
	s := r.Step()
	return int64((r.For + s - 1) / s)
}

// Period kinds of a budget.
const (
	Monthly = "monthly"
	Custom  = "custom"
)

// Budget policies for requests over a hard cap.
const (
	PolicyRefuse = "refuse"
	PolicyFlag   = "flag"
)

// Budget is a spending limit per period for one scope.
type Budget struct {
	Name string
	// ScopeKey is team, feature or cost_center; ScopeValue its value.
	ScopeKey, ScopeValue string
	// Period is Monthly (calendar months, UTC) or Custom: periods of PeriodDays days from
	// PeriodStart.
	Period      string
	PeriodStart time.Time
	PeriodDays  int
	LimitPico   int64
	// AlertAtPercent lists the soft caps: an alert fires once spend reaches each.
	AlertAtPercent []int64
	// HardCapPercent, when > 0, is the share of the limit past which the budget is hard
	// capped; the collector then applies Policy to the scope's requests.
	HardCapPercent int64
	Policy         string
	Severity       string
	// ForecastAlertMilli is the probability, in thousandths of a percent, of ending the period
	// over the limit at which budget_forecast fires, once the seasonal forecast has enough
	// history (default DefaultForecastAlertMilli).
	ForecastAlertMilli int64
}

// Scope is "team=search".
func (b *Budget) Scope() string { return b.ScopeKey + "=" + b.ScopeValue }

// Route says how alerts are grouped into notifications and how often they repeat.
type Route struct {
	GroupBy        []string
	GroupWait      time.Duration
	GroupInterval  time.Duration
	RepeatInterval time.Duration
}

// Receiver is one destination. Exactly one integration is set.
type Receiver struct {
	Name string
	// Match selects alerts by label equality; empty matches every alert.
	Match        map[string]string
	Webhook      *Webhook
	Slack        *Slack
	PagerDuty    *PagerDuty
	Alertmanager *Alertmanager
}

// Webhook posts the Alertmanager v4 webhook payload to URL, with an Authorization: Bearer
// header when BearerToken is set.
type Webhook struct{ URL, BearerToken string }

// Slack posts a message to an incoming-webhook URL.
type Slack struct{ URL, Channel string }

// PagerDuty sends Events API v2 trigger and resolve events.
type PagerDuty struct{ URL, RoutingKey string }

// Alertmanager pushes alerts to an Alertmanager's /api/v2/alerts.
type Alertmanager struct{ URL string }

// Silence mutes the alerts whose labels equal every matcher from StartsAt (zero: always
// started) until EndsAt.
type Silence struct {
	Matchers         map[string]string
	StartsAt, EndsAt time.Time
	Comment          string
}

// Matches reports whether labels satisfy every matcher.
func (s *Silence) Matches(labels map[string]string) bool { return matchAll(s.Matchers, labels) }

func matchAll(matchers, labels map[string]string) bool {
	for k, v := range matchers {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Matches reports whether the receiver takes an alert with these labels.
func (r *Receiver) Matches(labels map[string]string) bool { return matchAll(r.Match, labels) }

// File is a validated rules file.
type File struct {
	Rules   []Rule
	Budgets []Budget
	// Runaways are the rules of kind runaway, which the detect engine does not run.
	Runaways  []Runaway
	Route     Route
	Receivers []Receiver
	Silences  []Silence
	// InhibitRules mute alerts while others fire (inhibit_rules).
	InhibitRules []InhibitRule
	// BillingDrift, unless the file turns the built-in off, compares the meter with the
	// providers' bills (billing_drift).
	BillingDrift *BillingDrift
	// LinkURL is the base of the "breakdown" link in notifications; the alert's labels are
	// appended as query parameters.
	LinkURL string
}

// BillingDrift is the built-in billing_drift alert: per provider, over the last Days complete
// UTC days whose bills are complete, the difference between what the providers billed and what
// tokenmeter metered — on the days and models the meter priced every event of, so that a
// model without a price is not counted as drift (unpriced_model says so) — fires when it is
// more than AboveMilli thousandths of a percent of the bill and at least MinPico.
type BillingDrift struct {
	AboveMilli int64
	MinPico    int64
	Days       int
	Severity   string
}

// DefaultForecastAlertMilli: budget_forecast fires once ending over the limit is more likely
// than not.
const DefaultForecastAlertMilli = 50_000

// Defaults of billing_drift.
const (
	DefaultDriftAboveMilli = 5_000           // 5 %
	DefaultDriftMinPico    = 10 * PicoPerUSD // $10
	DefaultDriftDays       = 7
)
