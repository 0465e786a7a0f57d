package alerting

import (
	"context"
	"fmt"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/alert"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// BillingDrift is the built-in alert comparing the meter with the providers' bills
// (rules.BillingDrift).
const BillingDrift = rules.BuiltinBillingDrift

// DriftInterval is how often the alerter reads billing_reconciliation: bills arrive daily.
const DriftInterval = 5 * time.Minute

// drift is billing_drift's figures for one provider over the days compared.
type drift struct {
	provider        string
	metered, billed int64 // picodollars
	days            uint64
	from, to        time.Time
}

// diff is billed − metered.
func (d drift) diff() int64 { return d.billed - d.metered }

// RefreshDrift reads, per provider, what the providers billed and what tokenmeter metered over
// the last Days complete UTC days — only days whose bill is complete, and only the
// days × models the meter priced every event of (an unpriced model is unpriced_model's
// business, not drift) — and keeps it for Tick. Providers without imported bills for a day are
// left out of that day. On an error the previous figures stay.
func (a *Alerter) RefreshDrift(ctx context.Context) error {
	a.mu.Lock()
	cfg, conn := a.file.BillingDrift, a.ch
	a.mu.Unlock()
	if cfg == nil || conn == nil {
		a.mu.Lock()
		a.drifts = nil
		a.mu.Unlock()
		return nil
	}
	to := a.cfg.Now().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, -cfg.Days)
	db := a.cfg.Database
	rows, err := conn.Query(ctx, fmt.Sprintf(`
		SELECT provider, toString(sum(metered_cost_usd)), toString(sum(billed_cost_usd)), uniqExact(day)
		FROM %[1]s.billing_reconciliation
		WHERE day >= toDate(%[2]d) AND day < toDate(%[3]d) AND billed_complete = 1 AND metered_unpriced_events = 0
		  AND (day, provider) IN (SELECT DISTINCT day, lower(provider) FROM %[1]s.provider_usage WHERE day >= toDate(%[2]d) AND day < toDate(%[3]d))
		GROUP BY provider
		ORDER BY provider`, db, from.Unix()/86400, to.Unix()/86400))
	if err != nil {
		return fmt.Errorf("read %s.billing_reconciliation: %w", db, err)
	}
	defer rows.Close()
	var out []drift
	for rows.Next() {
		d := drift{from: from, to: to}
		var metered, billed string
		if err := rows.Scan(&d.provider, &metered, &billed, &d.days); err != nil {
			return fmt.Errorf("read %s.billing_reconciliation: %w", db, err)
		}
		if d.metered, err = parseAmount(metered, true); err != nil {
			return err
		}
		if d.billed, err = parseAmount(billed, true); err != nil {
			return err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s.billing_reconciliation: %w", db, err)
	}
	a.mu.Lock()
	a.drifts = out
	a.mu.Unlock()
	return nil
}

// observeDrifts steps the billing_drift alert of every provider with figures. Called by Tick
// with a.mu held.
func (a *Alerter) observeDrifts(now time.Time, seen map[string]bool) {
	cfg := a.file.BillingDrift
	if cfg == nil {
		return
	}
	subj := subject{name: BillingDrift, severity: cfg.Severity, money: true, measure: string(rules.Cost), keepFiringFor: time.Hour,
		description: "what a provider billed differs from what tokenmeter metered by more than the threshold (billing_reconciliation)"}
	for _, d := range a.drifts {
		diff := d.diff()
		abs := max(diff, -diff)
		level, _ := rules.MulDiv(d.billed, cfg.AboveMilli, 100_000)
		sig := alert.Cleared
		if d.billed > 0 && abs > level && abs >= cfg.MinPico {
			sig = alert.Held
		}
		sign := "+"
		if diff < 0 {
			sign = "-"
		}
		summary := fmt.Sprintf("%s billed %s, tokenmeter metered %s over %d complete days %s to %s: %s%s (%s of the bill), beyond %d.%03d%%",
			d.provider, amount(d.billed, true, ""), amount(d.metered, true, ""), d.days, d.from.Format(time.DateOnly),
			d.to.AddDate(0, 0, -1).Format(time.DateOnly), sign, amount(abs, true, ""), percent(abs, d.billed),
			cfg.AboveMilli/1000, cfg.AboveMilli%1000)
		labels := map[string]string{"alertname": BillingDrift, "severity": cfg.Severity, "provider": d.provider}
		a.observeCap(labels, subj, sig, diff, level, d.billed, summary, now, seen)
	}
}
