// Package alerter will evaluate spend rules over USAGE_ENRICHED and notify on-call (threshold,
// rate of change, anomalies, budgets). It is a placeholder until its own issue lands: the
// module exists so the workspace layout is the final one.
package alerter
