package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// runRules implements "tokenmeter rules validate FILE...": each file must parse and
// validate; every problem is printed, each naming the rule and field.
func runRules(args []string) error {
	if len(args) < 2 || args[0] != "validate" {
		return errors.New("usage: tokenmeter rules validate FILE...")
	}
	var errs []error
	for _, name := range args[1:] {
		data, err := os.ReadFile(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f, err := rules.Parse(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Print(describeRules(name, f))
	}
	return errors.Join(errs...)
}

// describeRules summarizes a valid rules file, one line per rule (runaway rules and the
// built-in billing_drift included), budget and receiver, so that what the alerter will run —
// built-ins and their defaults too — can be read before it runs.
func describeRules(name string, f *rules.File) string {
	var b strings.Builder
	n := len(f.Rules) + len(f.Runaways)
	if f.BillingDrift != nil {
		n++
	}
	fmt.Fprintf(&b, "%s: %d rules, %d budgets, %d receivers, %d silences, %d inhibit rules\n",
		name, n, len(f.Budgets), len(f.Receivers), len(f.Silences), len(f.InhibitRules))
	for _, r := range f.Rules {
		by := "everything"
		if len(r.GroupBy) > 0 {
			by = strings.Join(r.GroupBy, ",")
		}
		fmt.Fprintf(&b, "  rule %s: %s of %s by %s, for %s, keep firing %s, severity %s\n", r.Name, r.Kind, r.Measure, by, r.For, r.KeepFiringFor, r.Severity)
	}
	for _, r := range f.Runaways {
		capped := ""
		if r.Cap {
			capped = ", caps the workflow"
		}
		fmt.Fprintf(&b, "  rule %s: runaway of workflow cost over %s, above %sx the %d-day baseline and %s USD%s, severity %s\n",
			r.Name, r.Window, rules.FormatMilli(r.FactorMilli), r.Days, rules.FormatUSD(r.MinPico), capped, r.Severity)
	}
	if d := f.BillingDrift; d != nil {
		fmt.Fprintf(&b, "  rule %s: bills against the meter over %d days, above %s%% and %s USD, severity %s\n",
			rules.BuiltinBillingDrift, d.Days, rules.FormatMilli(d.AboveMilli), rules.FormatUSD(d.MinPico), d.Severity)
	}
	for _, bu := range f.Budgets {
		fmt.Fprintf(&b, "  budget %s: %s, %s, limit %s USD, soft caps %v%%, hard cap %d%% (%s)\n",
			bu.Name, bu.Scope(), bu.Period, rules.FormatUSD(bu.LimitPico), bu.AlertAtPercent, bu.HardCapPercent, bu.Policy)
	}
	for _, r := range f.Receivers {
		kind := "webhook"
		switch {
		case r.Slack != nil:
			kind = "slack"
		case r.PagerDuty != nil:
			kind = "pagerduty"
		case r.Alertmanager != nil:
			kind = "alertmanager"
		}
		fmt.Fprintf(&b, "  receiver %s: %s\n", r.Name, kind)
	}
	b.WriteString("ok\n")
	return b.String()
}
