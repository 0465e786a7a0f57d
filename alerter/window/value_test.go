package window

import (
	"testing"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// untagged_cost is the cost tag_coverage does not count as attributed; tier_fallback_events
// counts the events batch.Row.TierFallback flags.
func TestValueUntaggedAndTierFallback(t *testing.T) {
	full := batch.Row{Team: "search", Feature: "chat", Env: "prod", CostCenter: "cc-1", CostPico: 7, Priced: true,
		ServiceTier: "batch", PriceVersion: "openai/gpt-4o@2024-10-01/batch"}
	f := func(name string, change func(*batch.Row), untagged, fallback int64) {
		t.Helper()
		r := full
		change(&r)
		if got := Value(&r, rules.UntaggedCost); got != untagged {
			t.Errorf("%s: untagged_cost = %d, want %d", name, got, untagged)
		}
		if got := Value(&r, rules.TierFallbackEvents); got != fallback {
			t.Errorf("%s: tier_fallback_events = %d, want %d", name, got, fallback)
		}
	}
	f("fully attributed, batch priced as batch", func(*batch.Row) {}, 0, 0)
	f("no team", func(r *batch.Row) { r.Team = "" }, 7, 0)
	f("team unallocated", func(r *batch.Row) { r.Team = "unallocated" }, 7, 0)
	f("feature unallocated is a value", func(r *batch.Row) { r.Feature = "unallocated" }, 0, 0)
	f("no feature", func(r *batch.Row) { r.Feature = "" }, 7, 0)
	f("no env", func(r *batch.Row) { r.Env = "" }, 7, 0)
	f("no cost centre", func(r *batch.Row) { r.CostCenter = "" }, 7, 0)
	f("batch priced as standard", func(r *batch.Row) { r.PriceVersion = "openai/gpt-4o@2024-10-01/standard" }, 0, 1)
	f("unpriced", func(r *batch.Row) { r.Priced, r.PriceVersion, r.CostPico = false, "", 0 }, 0, 0)
}
