package budget

import (
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
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
		AlertAtPercent: []int64{30, 80, 100}, HardCapPercent: 100, Policy: rules.PolicyRefuse}
	tr := NewTracker([]rules.Budget{b}, nil)
	// $100 every day of November 2026 up to the 10th, plus last October's spend that must
	// not count, plus another team's. Ten complete days known: the run-rate forecast.
	for d := 1; d <= 10; d++ {
		tr.Add(&batch.Row{Time: time.Date(2026, 11, d, 9, 0, 0, 0, time.UTC), Team: "search", CostPico: 100 * usd})
	}
	tr.AddHistory("search", time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), 999*usd)
	tr.Add(&batch.Row{Time: time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC), Team: "support", CostPico: 500 * usd})
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	st := tr.Evaluate(now)[0]
	// Spent: 10 × $100. Forecast: spent + (last 7 complete days: $700) × 20.5 days left / 7
	// days = 1000 + 2050.
	if st.Spent != 1000*usd || st.Forecast != 3050*usd || st.Seasonal {
		t.Errorf("spent %s forecast %s seasonal %v; want 1000 and 3050 by run-rate", rules.FormatUSD(st.Spent), rules.FormatUSD(st.Forecast), st.Seasonal)
	}
	if rec := st.Record(); rec.ForecastMethod != "run_rate" || rec.ForecastLowUSD != "" || rec.ExceedProbability != "" {
		t.Errorf("record of a run-rate forecast = %+v", rec)
	}
	if len(st.Reached) != 1 || st.Reached[0] != 30 || st.HardCapped || st.State() != kv.StateSoft {
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
	if st := tr2.Evaluate(time.Date(2026, 11, 1, 14, 0, 0, 0, time.UTC))[0]; !st.HardCapped || st.State() != kv.StateHardCapped || len(st.Reached) != 3 {
		t.Errorf("at the limit: %+v", st)
	}
	rec := tr2.Evaluate(time.Date(2026, 11, 1, 14, 0, 0, 0, time.UTC))[0].Record()
	if rec.Name != "search" || rec.Scope != "team=search" || rec.SpentUSD != "3000.000000000000" || rec.LimitUSD != "3000.000000000000" ||
		rec.State != kv.StateHardCapped || rec.Policy != "refuse" {
		t.Errorf("record = %+v", rec)
	}
}

// With four weeks known, the forecast follows the weekdays: a team spending $100 on weekdays
// and $20 at weekends, exactly, has a forecast without spread — 0 % or 100 % likely over
// the limit. With noise, the 90 % interval and the probability come from the residuals.
func TestSeasonalForecast(t *testing.T) {
	b := rules.Budget{Name: "search", ScopeKey: "team", ScopeValue: "search", Period: rules.Monthly, LimitPico: 2200 * usd,
		AlertAtPercent: []int64{100}}
	spend := func(day time.Time, noise int64) int64 {
		v := int64(100)
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			v = 20
		}
		return (v + noise) * usd
	}
	// October 5 (a Monday) to December 9, noon: 65 complete days, the last 28 averaged.
	now := time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)
	run := func(noise func(i int) int64) Status {
		tr := NewTracker([]rules.Budget{b}, nil)
		i := 0
		for d := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC); d.Before(now.Truncate(24 * time.Hour)); d = d.AddDate(0, 0, 1) {
			tr.AddHistory("search", d, spend(d, noise(i)))
			i++
		}
		return tr.Evaluate(now)[0]
	}
	st := run(func(int) int64 { return 0 })
	// December 1–8: 6 weekdays and 2 weekend days = $640. Left: half of Wednesday the 9th
	// ($50), then 10–31 Dec: 16 weekdays and 6 weekend days = $1,720. Forecast $2,410.
	if !st.Seasonal || st.Spent != 640*usd || st.Forecast != 2410*usd || st.ForecastLow != 2410*usd || st.ForecastHigh != 2410*usd || st.ExceedMilli != 100_000 {
		t.Errorf("exact weekly pattern: %+v; want spent 640, forecast 2410 with no spread, certainly over 2200", st)
	}
	rec := st.Record()
	if rec.ForecastMethod != "seasonal" || rec.ForecastLowUSD != "2410.000000000000" || rec.ForecastHighUSD != "2410.000000000000" || rec.ExceedProbability != "1.000" {
		t.Errorf("record = %+v", rec)
	}
	// ±$10 on alternate days. Over the last 28 days every weekday has two +10 and two −10
	// days: the means stay, each residual is ±10, so σ² = 28 × 100 / (28 − 7) = 133.33 per
	// day² (in USD); over k = 22.5 days left σ√k = √3000 = $54.772255750517; the 90 % interval
	// is ± 1.6448536 × that = ± $90.092343527551. P(over 2200) = Φ((2410 − 2200) / 54.77) =
	// Φ(3.834) = 0.99994.
	st = run(func(i int) int64 {
		if i%2 == 0 {
			return 10
		}
		return -10
	})
	if st.Forecast != 2410*usd || st.ForecastLow != 2319_907_656_472_449 || st.ForecastHigh != 2500_092_343_527_551 || st.ExceedMilli != 99_994 {
		t.Errorf("noisy pattern: forecast %d [%d, %d] p %d", st.Forecast, st.ForecastLow, st.ForecastHigh, st.ExceedMilli)
	}
}
