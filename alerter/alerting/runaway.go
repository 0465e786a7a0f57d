package alerting

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/alerter/alert"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/runaway"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
)

// runawayKeep is the span of workflow costs the alerter holds: the longest runaway window.
func runawayKeep(rs []rules.Runaway) time.Duration {
	var keep time.Duration
	for _, r := range rs {
		keep = max(keep, r.Window)
	}
	return keep
}

func (a *Alerter) runawayRule(name string) *rules.Runaway {
	for i := range a.file.Runaways {
		if a.file.Runaways[i].Name == name {
			return &a.file.Runaways[i]
		}
	}
	return nil
}

func runawaySubject(r *rules.Runaway) subject {
	d := r.Description
	if d == "" {
		d = "a workflow costs many times what a workflow of its feature usually costs"
	}
	return subject{name: r.Name, severity: r.Severity, description: d, keepFiringFor: r.KeepFiringFor, money: true, measure: string(rules.Cost),
		window: shortDuration(r.Window)}
}

func runawayMethod(r *rules.Runaway) string {
	return fmt.Sprintf("runaway: the workflow's cost over the last %s against the median cost per workflow of its feature, over the workflows that began and ended in the last %d complete UTC days (at least %d of them); level max(median × %s, %s)",
		shortDuration(r.Window), r.Days, r.MinWorkflows, rules.FormatMilli(r.FactorMilli), amount(r.MinPico, true, ""))
}

// RefreshRunaway reads, for every feature, the median cost per workflow of the workflows
// (workflow_costs, re-rating included) whose first and last events lie in the last Days
// complete UTC days, for each Days the runaway rules use, and keeps it for Tick. The
// baselines change with the UTC day only: each is read once a day (and for rules of new
// days). On an error the previous baselines stay.
func (a *Alerter) RefreshRunaway(ctx context.Context) error {
	to := a.cfg.Now().UTC().Truncate(24 * time.Hour)
	a.mu.Lock()
	conn := a.ch
	out := map[int]map[string]runaway.Baseline{}
	var days []int
	for _, r := range a.file.Runaways {
		if bs, ok := a.baselines[r.Days]; ok && a.baselinesTo.Equal(to) {
			out[r.Days] = bs
		} else if !slices.Contains(days, r.Days) {
			days = append(days, r.Days)
		}
	}
	a.mu.Unlock()
	if conn == nil || len(days) == 0 {
		return nil
	}
	for _, d := range days {
		from := to.AddDate(0, 0, -d)
		bs, err := readBaselines(ctx, conn, a.cfg.Database, from, to)
		if err != nil {
			return err
		}
		out[d] = bs
	}
	a.mu.Lock()
	a.baselines, a.baselinesTo = out, to
	a.mu.Unlock()
	return nil
}

func (a *Alerter) refreshRunaway(ctx context.Context) {
	if err := a.RefreshRunaway(ctx); err != nil && ctx.Err() == nil {
		a.cfg.Logger.Warn("runaway rules: read the usual cost per workflow; the previous baselines stay", "err", err)
	}
}

// baselineLookback is how far before a baseline's first day readBaselines looks for a
// workflow's earlier events: one that has any there did not begin within the days and is
// left out. A workflow whose events lie further apart than this (a gap of more than a day)
// would be taken for one that began within the days.
const baselineLookback = 24 * time.Hour

// readBaselines computes each feature's median in ClickHouse from integer picodollars: 18.16
// crashes on an array of Decimal128 (groupArray of cost_usd), never on one of Int64. It is
// what workflow_costs (first and last events within [from, to), re-rating included) gives,
// read from the events since from - baselineLookback only: the view groups all of
// usage_events, which after months no longer fits a query's memory.
func readBaselines(ctx context.Context, conn driver.Conn, db string, from, to time.Time) (map[string]runaway.Baseline, error) {
	since := from.Add(-baselineLookback).Unix()
	rows, err := conn.Query(ctx, fmt.Sprintf(`
		SELECT feature, n, s[intDiv(n + 1, 2)], s[intDiv(n, 2) + 1]
		FROM (
			SELECT feature, count() AS n, arraySort(groupArray(toInt64((cost_usd + correction_cost_usd) * 1000000000000))) AS s
			FROM (
				SELECT workflow_id, argMin(feature, time) AS feature, min(time) AS first_event, max(time) AS last_event,
					sum(cost_usd) AS cost_usd
				FROM %[1]s.usage_events
				WHERE workflow_id != '' AND time >= toDateTime(%[2]d)
				GROUP BY workflow_id
				HAVING first_event >= toDateTime(%[3]d) AND last_event < toDateTime(%[4]d)
			)
			ANY LEFT JOIN (
				SELECT workflow_id, sum(event_cost_usd) AS correction_cost_usd
				FROM (
					SELECT event_id, workflow_id
					FROM %[1]s.usage_events
					WHERE workflow_id != '' AND time >= toDateTime(%[2]d) AND event_id IN (SELECT event_id FROM %[1]s.cost_corrections)
				)
				ANY INNER JOIN (
					SELECT event_id, sum(cost_usd) AS event_cost_usd FROM %[1]s.cost_corrections GROUP BY event_id
				) USING event_id
				GROUP BY workflow_id
			) USING workflow_id
			GROUP BY feature
		)
		ORDER BY feature`, db, since, from.Unix(), to.Unix()))
	if err != nil {
		return nil, fmt.Errorf("read the workflows' costs from %s.usage_events: %w", db, err)
	}
	defer rows.Close()
	out := map[string]runaway.Baseline{}
	for rows.Next() {
		var feature string
		var n uint64
		var lo, hi int64
		if err := rows.Scan(&feature, &n, &lo, &hi); err != nil {
			return nil, fmt.Errorf("read the workflows' costs from %s.usage_events: %w", db, err)
		}
		// The mean of the two middle costs, rounded down, without overflowing.
		out[feature] = runaway.Baseline{Median: lo/2 + hi/2 + (lo%2+hi%2)/2, Workflows: int(n)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the workflows' costs from %s.usage_events: %w", db, err)
	}
	return out, nil
}

// backfillFlows loads the cost per minute of every workflow over the last keep before cutoff
// from usage_events (what the stream carried, before re-rating); the stream counts the rest.
func backfillFlows(ctx context.Context, conn driver.Conn, db string, f *runaway.Flows, keep time.Duration, cutoff time.Time) error {
	if keep <= 0 {
		return nil
	}
	from := cutoff.Truncate(time.Minute).Add(-keep)
	rows, err := conn.Query(ctx, fmt.Sprintf(`
		SELECT workflow_id, argMin(feature, time), min(time), toString(sum(cost_usd))
		FROM %s.usage_events
		WHERE workflow_id != '' AND time >= toDateTime(%d) AND time < toDateTime(%d)
		GROUP BY workflow_id, toStartOfMinute(time)`, db, from.Unix(), cutoff.Unix()))
	if err != nil {
		return fmt.Errorf("load workflow costs from %s.usage_events: %w", db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, feature, cost string
		var at time.Time
		if err := rows.Scan(&id, &feature, &at, &cost); err != nil {
			return fmt.Errorf("read workflow costs: %w", err)
		}
		v, err := parseAmount(cost, true)
		if err != nil {
			return err
		}
		f.Add(id, feature, at, v)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read workflow costs: %w", err)
	}
	return nil
}

// observeRunaways steps the alert of every workflow over a runaway rule's level. A workflow
// below it is not observed: Tick clears the alerts it did not see. Called by Tick with a.mu
// held.
func (a *Alerter) observeRunaways(now time.Time, seen map[string]bool) {
	if len(a.file.Runaways) == 0 {
		return
	}
	a.flows.Prune(now)
	for i := range a.file.Runaways {
		r := &a.file.Runaways[i]
		subj := runawaySubject(r)
		for _, res := range a.flows.Evaluate(r, a.baselines[r.Days], now) {
			labels := map[string]string{"alertname": r.Name, "severity": r.Severity, "feature": res.Feature, "workflow_id": res.Workflow}
			for k, v := range r.Labels {
				labels[k] = v
			}
			summary := fmt.Sprintf("workflow %s (feature %s): %s", res.Workflow, orNone(res.Feature), runawayReason(r, res))
			if r.Cap {
				summary += refusedUntilResolved
			}
			a.observeCap(labels, subj, alert.Held, res.Value, res.Level, res.Baseline.Median, summary, now, seen)
		}
	}
}

const refusedUntilResolved = "; its calls are refused until the alert resolves"

func runawayReason(r *rules.Runaway, res runaway.Result) string {
	return fmt.Sprintf("cost %s over the last %s (since %s), %s the usual %s per workflow of the feature (median of %d workflows over %d days); level %s",
		amount(res.Value, true, ""), shortDuration(r.Window), res.First.Format("2006-01-02 15:04 UTC"), ratio(res.Value, res.Baseline.Median),
		amount(res.Baseline.Median, true, ""), res.Baseline.Workflows, r.Days, amount(res.Level, true, ""))
}

// workflowCaps returns the hard caps of the firing alerts of runaway rules with cap, by
// bucket key, and remembers them: a cap keeps the reason it was published with, and its end
// (PeriodEnd, so that a stopped alerter cannot cap a workflow for ever) moves on every hour,
// to the hour after the rule's window from now. Called by Tick with a.mu held.
func (a *Alerter) workflowCaps(now time.Time) map[string]kv.Budget {
	caps := map[string]kv.Budget{}
	for _, t := range a.alerts {
		if t.a.State != alert.Firing {
			continue
		}
		r := a.runawayRule(t.a.Rule)
		wf := t.a.Labels["workflow_id"]
		if r == nil || !r.Cap || wf == "" {
			continue
		}
		key := kv.WorkflowCapKey(r.Name, wf)
		rec, ok := a.caps[key]
		if !ok {
			// The summary without "workflow … (feature …): " and the refusal it announces.
			reason := strings.TrimSuffix(t.a.Summary, refusedUntilResolved)
			if _, after, found := strings.Cut(reason, "): "); found {
				reason = after
			}
			rec = kv.Budget{Name: r.Name, Scope: "workflow_id=" + wf, PeriodStart: t.a.FiredAt, LimitUSD: raw(t.a.Level, true),
				SpentUSD: raw(t.a.Value, true), State: kv.StateHardCapped, Policy: rules.PolicyRefuse,
				Kind: kv.KindWorkflow, Reason: reason}
		}
		rec.PeriodEnd = now.Truncate(time.Hour).Add(r.Window + time.Hour)
		caps[key] = rec
	}
	a.caps = caps
	return caps
}
