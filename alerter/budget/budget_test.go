package budget

import (
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

const usd = rules.PicoPerUSD

func TestPeriods(t *testing.T) {
	m := &rules.Budget{Period: rules.Monthly}
	s, e := Period(m, time.Date(2026, 2, 14, 5, 0, 0, 0, time.UTC))
	if !s.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) || !e.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("monthly: %s – %s", s, e)
	}
	c := &rules.Budget{Period: rules.Custom, PeriodStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), PeriodDays: 90}
	s, e = Period(c, time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)) // day 91: the second period
	if !s.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) || !e.Equal(time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("custom: %s – %s", s, e)
	}
	s, _ = Period(c, time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)) // before the first period
	if !s.Equal(time.Date(2025, 10, 3, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("custom before start: %s", s)
	}
}

func TestSpendForecastAndCaps(t *testing.T) {
	b := rules.Budget{Name: "search", ScopeKey: "team", ScopeValue: "search", Period: rules.Monthly, LimitPico: 3000 * usd,
		AlertAtPercent: []int64{50, 80, 100}, HardCapPercent: 100, Policy: rules.PolicyRefuse}
	tr := NewTracker([]rules.Budget{b}, nil)
	// $100 every day of November 2026 up to the 20th, plus last October's spend that must
	// not count, plus another team's.
	for d := 1; d <= 20; d++ {
		tr.Add(&batch.Row{Time: time.Date(2026, 11, d, 9, 0, 0, 0, time.UTC), Team: "search", CostPico: 100 * usd})
	}
	tr.AddHistory("search", time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), 999*usd)
	tr.Add(&batch.Row{Time: time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), Team: "support", CostPico: 500 * usd})
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	st := tr.Evaluate(now)[0]
	// Spent: 20 × $100. Forecast: spent + (last 7 complete days: $700) × 10.5 days left / 7
	// days = 2000 + 1050.
	if st.Spent != 2000*usd || st.Forecast != 3050*usd {
		t.Errorf("spent %s forecast %s; want 2000 and 3050", rules.FormatUSD(st.Spent), rules.FormatUSD(st.Forecast))
	}
	if len(st.Reached) != 1 || st.Reached[0] != 50 || st.HardCapped || st.State() != StateSoft {
		t.Errorf("caps: %+v state %s", st.Reached, st.State())
	}
	// Early in a period the forecast extrapolates from the time elapsed: $10 after 12 hours
	// of a 30-day month is $600.
	tr2 := NewTracker([]rules.Budget{b}, nil)
	tr2.Add(&batch.Row{Time: time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC), Team: "search", CostPico: 10 * usd})
	if st := tr2.Evaluate(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))[0]; st.Forecast != 600*usd {
		t.Errorf("early forecast = %s, want 600", rules.FormatUSD(st.Forecast))
	}
	tr2.Add(&batch.Row{Time: time.Date(2026, 11, 1, 13, 0, 0, 0, time.UTC), Team: "search", CostPico: 2990 * usd})
	if st := tr2.Evaluate(time.Date(2026, 11, 1, 14, 0, 0, 0, time.UTC))[0]; !st.HardCapped || st.State() != StateHardCapped || len(st.Reached) != 3 {
		t.Errorf("at the limit: %+v", st)
	}
	rec := tr2.Evaluate(time.Date(2026, 11, 1, 14, 0, 0, 0, time.UTC))[0].Record()
	if rec.Name != "search" || rec.Scope != "team=search" || rec.SpentUSD != "3000.000000000000" || rec.LimitUSD != "3000.000000000000" ||
		rec.State != StateHardCapped || rec.Policy != "refuse" {
		t.Errorf("record = %+v", rec)
	}
}
