package alerting

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/alert"
	"github.com/tokenmeter/tokenmeter/alerter/budget"
	"github.com/tokenmeter/tokenmeter/alerter/detect"
	"github.com/tokenmeter/tokenmeter/alerter/history"
	"github.com/tokenmeter/tokenmeter/alerter/notify"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/state"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
)

// Names of the alerts budgets raise.
const (
	BudgetSoftCap  = "budget_soft_cap"
	BudgetForecast = "budget_forecast"
)

// forecastAfter: a forecast alert waits until the period is this old, since a forecast from
// the first hours of a month swings with every request.
const forecastAfter = 3 * 24 * time.Hour

// Tick evaluates every rule and budget at the clock's now, steps the alerts, records the
// transitions and flushes due notifications. Run calls it every EvalInterval.
func (a *Alerter) Tick(ctx context.Context) {
	started := time.Now()
	a.decodeMu.Lock()
	a.counted.expire()
	a.decodeMu.Unlock()
	a.mu.Lock()
	now := a.cfg.Now()
	seen := map[string]bool{}
	for _, res := range a.engine.Evaluate(now) {
		a.observe(res, now, seen)
	}
	statuses := a.tracker.Evaluate(now)
	for _, s := range statuses {
		a.observeBudget(s, now, seen)
	}
	a.observeDrifts(now, seen)
	a.observeRunaways(now, seen)
	for fp, t := range a.alerts {
		if !seen[fp] && (t.a.State == alert.Pending || t.a.State == alert.Firing) {
			a.step(t, alert.Cleared, now)
		}
	}
	var deletes []string
	counts := map[alert.State]int{}
	for fp, t := range a.alerts {
		if t.a.State == alert.Inactive || (t.a.State == alert.Resolved && !a.disp.Holds(fp)) {
			delete(a.alerts, fp)
			delete(a.dirty, fp)
			deletes = append(deletes, fp)
			continue
		}
		counts[t.a.State]++
	}
	for _, st := range []alert.State{alert.Pending, alert.Firing, alert.Resolved} {
		a.m.alerts.WithLabelValues(string(st)).Set(float64(counts[st]))
	}
	a.m.groups.Set(float64(a.engine.Groups()))
	writes := make([]string, 0, len(a.dirty))
	for fp := range a.dirty {
		writes = append(writes, fp)
	}
	clear(a.dirty)
	recs := make([]kv.Budget, len(statuses))
	for i, s := range statuses {
		recs[i] = s.Record()
	}
	caps := a.workflowCaps(now)
	disp := a.disp
	a.mu.Unlock()
	a.m.evalSeconds.Observe(time.Since(started).Seconds())

	disp.Flush(ctx)
	a.persist(ctx, writes, deletes)
	if err := a.budgets.Publish(ctx, recs); err != nil {
		a.cfg.Logger.Warn("publish budget states; retried next evaluation", "err", err)
		a.budgets.Forget()
	} else if err := a.budgets.SyncWorkflowCaps(ctx, caps); err != nil {
		a.cfg.Logger.Warn("publish workflow caps; retried next evaluation", "err", err)
		a.budgets.Forget()
	}
	a.flushHistory(ctx)
}

// persist writes the current record of each alert of writes and deletes the records of
// deletes. Tick and the dispatcher's onSent both write; persistMu orders them and each
// record is taken when it is written, so an older state (an alert's, before a receiver was
// told) never overwrites a newer one — after a restart that would page again.
func (a *Alerter) persist(ctx context.Context, writes []string, deletes []string) {
	a.persistMu.Lock()
	defer a.persistMu.Unlock()
	for _, fp := range writes {
		a.mu.Lock()
		t := a.alerts[fp]
		var r state.Record
		if t != nil {
			r = a.record(t)
			r.Notified = maps.Clone(r.Notified) // encoded outside a.mu
		}
		a.mu.Unlock()
		if t == nil {
			continue
		}
		if err := a.store.Put(ctx, fp, r); err != nil {
			a.cfg.Logger.Warn("store alert state; retried at the next change", "fingerprint", fp, "err", err)
			a.mu.Lock()
			if _, ok := a.alerts[fp]; ok {
				a.dirty[fp] = true
			}
			a.mu.Unlock()
		}
	}
	for _, fp := range deletes {
		if err := a.store.Delete(ctx, fp); err != nil {
			a.cfg.Logger.Warn("delete alert state", "fingerprint", fp, "err", err)
		}
	}
}

func (a *Alerter) flushHistory(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.hist == nil {
		return
	}
	if err := a.hist.Flush(ctx); err != nil {
		a.cfg.Logger.Warn("write alert history; kept for the next evaluation", "buffered", a.hist.Buffered(), "err", err)
	}
}

// WaitNotifications waits until the notifications in flight are sent (for tests and
// shutdown).
func (a *Alerter) WaitNotifications() {
	a.mu.Lock()
	d := a.disp
	a.mu.Unlock()
	d.Wait()
}

func signalOf(v detect.Verdict) alert.Signal {
	switch v {
	case detect.Hold:
		return alert.Held
	case detect.Pending:
		return alert.Met
	case detect.Elevated:
		return alert.Elevated
	}
	return alert.Cleared
}

func (a *Alerter) observe(res detect.Result, now time.Time, seen map[string]bool) {
	r := res.Rule
	labels := map[string]string{"alertname": r.Name, "severity": r.Severity}
	for k, v := range r.Labels {
		labels[k] = v
	}
	for k, v := range res.Labels {
		labels[k] = v
	}
	fp := alert.Fingerprint(labels)
	seen[fp] = true
	t := a.alerts[fp]
	sig := signalOf(res.Verdict)
	if t == nil {
		if sig != alert.Held && sig != alert.Met {
			return
		}
		t = &tracked{a: alert.Alert{Fingerprint: fp, Rule: r.Name, Labels: labels, State: alert.Inactive}}
		a.alerts[fp] = t
	}
	t.subj = ruleSubject(r)
	t.window = windowName(r)
	if sig == alert.Held || sig == alert.Met || t.a.State != alert.Firing {
		// Keep the numbers that fired the alert while it is clearing.
		t.a.Value, t.a.Level, t.a.Baseline = res.Value, res.Level, res.Baseline
		t.a.Summary = summarize(r, res)
		t.contrib, t.causes = nil, nil
		for _, c := range res.Contributors {
			t.contrib = append(t.contrib, contributor(c, r.Measure))
		}
		for _, c := range res.Causes {
			t.causes = append(t.causes, cause(c))
		}
	}
	a.step(t, sig, now)
}

func (a *Alerter) observeBudget(s budget.Status, now time.Time, seen map[string]bool) {
	b := s.Budget
	subj := subject{name: BudgetSoftCap, severity: b.Severity, money: true, measure: string(rules.Cost),
		description: "a budget's spend for the period reached a soft cap"}
	base := func(name string) map[string]string {
		return map[string]string{"alertname": name, "severity": b.Severity, "budget": b.Name, b.ScopeKey: b.ScopeValue}
	}
	for _, p := range b.AlertAtPercent {
		labels := base(BudgetSoftCap)
		labels["threshold"] = fmt.Sprintf("%d%%", p)
		level, _ := rules.MulDiv(b.LimitPico, p, 100)
		sig := alert.Cleared
		if slices.Contains(s.Reached, p) {
			sig = alert.Held
		}
		summary := fmt.Sprintf("budget %s (%s): %s spent of %s since %s (%s), forecast %s by %s",
			b.Name, b.Scope(), amount(s.Spent, true, ""), amount(b.LimitPico, true, ""), s.PeriodStart.Format(time.DateOnly),
			percent(s.Spent, b.LimitPico), amount(s.Forecast, true, ""), s.PeriodEnd.Format(time.DateOnly))
		a.observeCap(labels, subj, sig, s.Spent, level, b.LimitPico, summary, now, seen)
	}
	fsubj := subj
	fsubj.name = BudgetForecast
	fsubj.keepFiringFor = time.Hour
	fsubj.description = "at the current run-rate the budget is exceeded before the period ends"
	sig := alert.Cleared
	summary := fmt.Sprintf("budget %s (%s): forecast %s by %s, over the limit of %s (spent so far %s)",
		b.Name, b.Scope(), amount(s.Forecast, true, ""), s.PeriodEnd.Format(time.DateOnly), amount(b.LimitPico, true, ""), amount(s.Spent, true, ""))
	switch {
	case s.Seasonal:
		// Weekday-aware, with a spread: it fires on the probability of ending over the limit.
		fsubj.description = "the budget is likely to be exceeded before the period ends (seasonal forecast)"
		if s.ExceedMilli >= b.ForecastAlertMilli {
			sig = alert.Held
		}
		summary = fmt.Sprintf("budget %s (%s): forecast %s by %s (90%% interval %s to %s), %d.%d%% likely over the limit of %s (spent so far %s)",
			b.Name, b.Scope(), amount(s.Forecast, true, ""), s.PeriodEnd.Format(time.DateOnly), amount(s.ForecastLow, true, ""),
			amount(s.ForecastHigh, true, ""), s.ExceedMilli/1000, s.ExceedMilli%1000/100, amount(b.LimitPico, true, ""), amount(s.Spent, true, ""))
	case s.Forecast > b.LimitPico && now.Sub(s.PeriodStart) >= forecastAfter:
		sig = alert.Held
	}
	a.observeCap(base(BudgetForecast), fsubj, sig, s.Forecast, b.LimitPico, b.LimitPico, summary, now, seen)
}

func (a *Alerter) observeCap(labels map[string]string, subj subject, sig alert.Signal, value, level, baseline int64,
	summary string, now time.Time, seen map[string]bool) {
	fp := alert.Fingerprint(labels)
	seen[fp] = true
	t := a.alerts[fp]
	if t == nil {
		if sig != alert.Held {
			return
		}
		t = &tracked{a: alert.Alert{Fingerprint: fp, Rule: subj.name, Labels: labels, State: alert.Inactive}}
		a.alerts[fp] = t
	}
	t.subj, t.window = subj, subj.window
	if t.window == "" {
		t.window = "period"
	}
	t.a.Value, t.a.Level, t.a.Baseline, t.a.Summary = value, level, baseline, summary
	a.step(t, sig, now)
}

// step applies a signal and records the transition: history row, KV write, and for firing
// and resolved, the dispatcher.
func (a *Alerter) step(t *tracked, sig alert.Signal, now time.Time) {
	tr, changed := t.a.Step(sig, now, t.subj.keepFiringFor)
	if !changed {
		return
	}
	a.dirty[t.a.Fingerprint] = true
	if a.hist != nil {
		a.hist.Add(history.Row{At: now, Fingerprint: t.a.Fingerprint, Rule: t.a.Rule, Labels: t.a.Labels,
			From: string(tr.From), To: string(tr.To), Measure: t.subj.measure, Money: t.subj.money,
			Value: t.a.Value, Level: t.a.Level, Baseline: t.a.Baseline, Summary: t.a.Summary})
	}
	if tr.To == alert.Firing || tr.To == alert.Resolved {
		a.cfg.Logger.Info("alert "+string(tr.To), "alert", t.a.Rule, "labels", t.a.Labels, "summary", t.a.Summary)
		a.disp.Update(a.notification(t))
	}
}

// notification is the alert as notifiers see it.
func (a *Alerter) notification(t *tracked) notify.Alert {
	n := notify.Alert{
		Status: notify.StatusFiring, Labels: t.a.Labels, Fingerprint: t.a.Fingerprint,
		StartsAt: t.a.FiredAt, Severity: t.subj.severity, Window: t.window, Contributors: t.contrib, Causes: t.causes,
		Value:          amount(t.a.Value, t.subj.money, rules.Measure(t.subj.measure)),
		Level:          amount(t.a.Level, t.subj.money, rules.Measure(t.subj.measure)),
		Baseline:       amount(t.a.Baseline, t.subj.money, rules.Measure(t.subj.measure)),
		BaselineMethod: a.baselineMethod(t.a.Rule),
		Annotations:    map[string]string{"summary": t.a.Summary},
	}
	if t.subj.description != "" {
		n.Annotations["description"] = t.subj.description
	}
	if n.StartsAt.IsZero() {
		n.StartsAt = t.a.Since
	}
	if t.a.State == alert.Resolved {
		n.Status, n.EndsAt = notify.StatusResolved, t.a.Since
	}
	if a.file.LinkURL != "" {
		q := url.Values{}
		for k, v := range t.a.Labels {
			q.Set(k, v)
		}
		n.Link = a.file.LinkURL + "?" + q.Encode()
	}
	return n
}

// contributor prints a top contributor for people: "model gpt-4o 5.40 USD (+5.33 USD, 98.7%
// of the increase)", or "(…, 40.0% of the window)" when the group has no increase.
func contributor(c detect.Contributor, m rules.Measure) string {
	inc := amount(c.Increase, m.Money(), m)
	if c.Increase >= 0 {
		inc = "+" + inc
	}
	of := "window"
	if c.OfIncrease {
		of = "increase"
	}
	share := c.ShareMilli
	sign := ""
	if share < 0 {
		sign, share = "-", -share
	}
	s := fmt.Sprintf("%s %s %s (%s, %s%d.%d%% of the %s)", c.Dimension, orNone(c.Value), amount(c.Amount, m.Money(), m),
		inc, sign, share/1000, share%1000/100, of)
	if c.New {
		s += ", new since " + c.FirstSeen.Format("15:04") + " UTC"
	}
	return s
}

// cause renders one factor of a cost spike: "volume +0.45 USD (75.6% of the increase): 50 →
// 100 calls".
func cause(c detect.Cause) string {
	inc := amount(c.Increase, true, rules.Cost)
	if c.Increase >= 0 {
		inc = "+" + inc
	}
	share, sign := c.ShareMilli, ""
	if share < 0 {
		sign, share = "-", -share
	}
	var what string
	switch c.Factor {
	case detect.FactorVolume:
		what = fmt.Sprintf("%.0f → %.0f calls", c.Before, c.Now)
	case detect.FactorSize:
		what = fmt.Sprintf("%.0f → %.0f tokens per call", c.Before, c.Now)
	case detect.FactorMix:
		what = fmt.Sprintf("%.4g → %.4g USD per million tokens at list price", c.Before, c.Now)
	case detect.FactorCache:
		what = fmt.Sprintf("%.1f%% → %.1f%% of the list price paid", c.Before, c.Now)
	}
	return fmt.Sprintf("%s %s (%s%d.%d%% of the increase): %s", c.Factor, inc, sign, share/1000, share%1000/100, what)
}

// baselineMethod says how the named rule's or budget alert's baseline and level are
// computed, for the baseline_method annotation.
func (a *Alerter) baselineMethod(name string) string {
	switch name {
	case BudgetSoftCap:
		return "budget: spend so far in the period against the limit; the level is the soft cap's share of the limit"
	case BudgetForecast:
		return "budget: forecast for the period's end against the limit — with 14 days known, spent + each day left at its weekday's mean of the last 4 weeks, firing on the probability of ending over the limit; before that, spent + the last 7 complete days' run-rate over the time left"
	}
	for _, r := range a.engine.Rules() {
		if r.Name == name {
			return baselineMethod(r)
		}
	}
	if r := a.runawayRule(name); r != nil {
		return runawayMethod(r)
	}
	return ""
}

func baselineMethod(r *rules.Rule) string {
	robust := fmt.Sprintf("level max(median × %s, median + %s × 1.4826 × MAD)", rules.FormatMilli(r.FactorMilli), rules.FormatMilli(r.ScoreMilli))
	switch r.Kind {
	case rules.Threshold:
		if r.ShareOf != "" {
			return fmt.Sprintf("threshold: %s%% of all %s over the same %s; contributors against the %s before",
				rules.FormatMilli(r.AboveShareMilli), r.ShareOf, windowName(r), windowName(r))
		}
		return fmt.Sprintf("threshold: a fixed level; contributors against the %s before", windowName(r))
	case rules.Change:
		return fmt.Sprintf("median of the same %s 1 to %d × %s earlier (at least %d known); %s; contributors by the mix of the %s before",
			windowName(r), r.Periods, shortDuration(r.Period), r.MinPeriods, robust, windowName(r))
	case rules.Anomaly:
		return fmt.Sprintf("median of the same hour over the last %d days of the same type (weekday or weekend, at least %d known); %s",
			r.Days, r.MinHistory, robust)
	case rules.Creep:
		return fmt.Sprintf("the 7 days before; level the baseline plus %s%%", rules.FormatMilli(r.GrowthMilli))
	}
	return ""
}

func (a *Alerter) record(t *tracked) state.Record {
	money := t.subj.money
	return state.Record{
		Alert: kv.Alert{Rule: t.a.Rule, Labels: t.a.Labels, State: string(t.a.State), Since: t.a.Since,
			Value: raw(t.a.Value, money), Summary: t.a.Summary, Updated: t.a.Updated},
		ActiveAt: t.a.ActiveAt, FiredAt: t.a.FiredAt, ClearedSince: t.a.ClearedSince,
		Level: raw(t.a.Level, money), Baseline: raw(t.a.Baseline, money), Notified: t.notified,
	}
}

// raw prints an amount exactly: USD with 12 decimals for money, an integer otherwise.
func raw(v int64, money bool) string {
	if money {
		return fmt.Sprintf("%d.%012d", v/rules.PicoPerUSD, v%rules.PicoPerUSD)
	}
	return fmt.Sprint(v)
}

// amount prints an amount for people: "152.30 USD", "1200 requests".
func amount(v int64, money bool, m rules.Measure) string {
	if money {
		return rules.FormatUSD(v) + " USD"
	}
	unit := string(m)
	if m == rules.UnpricedEvents {
		unit = "unpriced events"
	}
	return fmt.Sprintf("%d %s", v, unit)
}

// percent prints a/b as a percentage with one decimal, exactly rounded down.
func percent(a, b int64) string {
	if b <= 0 {
		return "n/a"
	}
	p, _ := rules.MulDiv(a, 1000, b)
	return fmt.Sprintf("%d.%d%%", p/10, p%10)
}

// ratio prints a/b with two decimals ("3.80×").
func ratio(a, b int64) string {
	if b <= 0 {
		return "∞×"
	}
	r, _ := rules.MulDiv(a, 100, b)
	return fmt.Sprintf("%d.%02d×", r/100, r%100)
}

func windowName(r *rules.Rule) string {
	switch {
	case r.CalendarDay:
		return "calendar day"
	case r.Kind == rules.Creep:
		return "7 days"
	case r.Kind == rules.Anomaly:
		return "1h"
	}
	return shortDuration(r.Window)
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// summarize says in one sentence what fired and by how much.
func summarize(r *rules.Rule, res detect.Result) string {
	who := ""
	for _, d := range r.GroupBy {
		who += fmt.Sprintf("%s=%s ", d, orNone(res.Labels[d]))
	}
	money := r.Measure.Money()
	v, lvl, base := amount(res.Value, money, r.Measure), amount(res.Level, money, r.Measure), amount(res.Baseline, money, r.Measure)
	switch r.Kind {
	case rules.Threshold:
		if r.ShareOf != "" {
			return fmt.Sprintf("%s%s is %s over the last %s, above %s%% of all %s (%s)", who, r.Measure, v, windowName(r),
				rules.FormatMilli(r.AboveShareMilli), r.ShareOf, lvl)
		}
		return fmt.Sprintf("%s%s is %s over the last %s, above %s", who, r.Measure, v, windowName(r), lvl)
	case rules.Change:
		return fmt.Sprintf("%s%s is %s over the last %s, %s the usual %s (median of the same time over the past %d × %s)",
			who, r.Measure, v, windowName(r), ratio(res.Value, res.Baseline), base, r.Periods, shortDuration(r.Period))
	case rules.Anomaly:
		return fmt.Sprintf("%s%s is %s this hour, %s the usual %s for this hour of a %s", who, r.Measure, v,
			ratio(res.Value, res.Baseline), base, dayType(res.At))
	case rules.Creep:
		return fmt.Sprintf("%s%s is %s over the last 7 days, up %s on the 7 days before (%s)", who, r.Measure, v,
			percent(res.Value-res.Baseline, max(res.Baseline, 1)), base)
	}
	return who
}

func dayType(t time.Time) string {
	if wd := t.UTC().Weekday(); wd == time.Saturday || wd == time.Sunday {
		return "weekend day"
	}
	return "weekday"
}
