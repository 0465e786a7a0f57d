package detect

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/alert"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

const usd = rules.PicoPerUSD

// monday is the start of the synthetic series: Monday 2026-01-05 00:00 UTC.
var monday = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// harness drives the state machine of every result like the alerter does and records the
// transitions to firing and to resolved.
type harness struct {
	t      *testing.T
	e      *Engine
	alerts map[string]*alert.Alert
	fired  []string // "rule labels at"
	solved []string
	last   []Result
}

func newHarness(t *testing.T, rs ...rules.Rule) *harness {
	return &harness{t: t, e: New(rs, nil), alerts: map[string]*alert.Alert{}}
}

func key(r *rules.Rule, labels map[string]string) string {
	var b strings.Builder
	b.WriteString(r.Name)
	for _, d := range r.GroupBy {
		b.WriteString(" " + d + "=" + labels[d])
	}
	return b.String()
}

func (h *harness) eval(now time.Time) {
	h.last = h.e.Evaluate(now)
	seen := map[string]bool{}
	keep := map[string]time.Duration{}
	for _, res := range h.last {
		k := key(res.Rule, res.Labels)
		seen[k] = true
		keep[k] = res.Rule.KeepFiringFor
		a := h.alerts[k]
		if a == nil {
			a = &alert.Alert{State: alert.Inactive}
			h.alerts[k] = a
		}
		sig := map[Verdict]alert.Signal{Clear: alert.Cleared, Elevated: alert.Elevated, Pending: alert.Met, Hold: alert.Held}[res.Verdict]
		h.step(k, a, sig, now, res.Rule.KeepFiringFor)
	}
	for k, a := range h.alerts {
		if !seen[k] {
			var kf time.Duration
			for _, r := range h.e.Rules() {
				if strings.HasPrefix(k, r.Name) {
					kf = r.KeepFiringFor
				}
			}
			h.step(k, a, alert.Cleared, now, kf)
		}
	}
}

func (h *harness) step(k string, a *alert.Alert, sig alert.Signal, now time.Time, keep time.Duration) {
	tr, ok := a.Step(sig, now, keep)
	if !ok {
		return
	}
	at := now.Format("01-02 15:04")
	switch tr.To {
	case alert.Firing:
		h.fired = append(h.fired, k+" "+at)
	case alert.Resolved:
		h.solved = append(h.solved, k+" "+at)
	}
}

func row(at time.Time, team string, pico int64) *batch.Row {
	return &batch.Row{Time: at, Team: team, Model: "gpt-4o", Feature: "chat", Priced: true, CostPico: pico}
}

// diurnal is a team's spend in one minute: $0.10 on average, ±50 % over the day, with ±20 %
// deterministic noise.
func diurnal(rng *rand.Rand, t time.Time) int64 {
	h := t.Hour()
	shape := []int64{50, 45, 40, 40, 45, 55, 70, 90, 110, 130, 145, 150, 150, 145, 140, 135, 130, 120, 110, 95, 80, 70, 60, 55}[h]
	base := usd / 10 * shape / 100
	return base * (80 + rng.Int64N(41)) / 100
}

func builtin(name string) rules.Rule {
	for _, r := range rules.Builtins() {
		if r.Name == name {
			return r
		}
	}
	panic(name)
}

func TestDiurnalSeriesWithNoiseRaisesNoAlert(t *testing.T) {
	creep := rules.Rule{Name: "creep", Kind: rules.Creep, Measure: rules.Cost, GroupBy: []string{"team"}, GrowthMilli: 30_000,
		For: 72 * time.Hour, KeepFiringFor: time.Hour, ResolvePercent: 90}
	anomaly := rules.Rule{Name: "seasonal", Kind: rules.Anomaly, Measure: rules.Cost, GroupBy: []string{"team"}, Window: time.Hour,
		Days: 28, MinHistory: 4, FactorMilli: 1500, ScoreMilli: 4000, KeepFiringFor: time.Hour, ResolvePercent: 90}
	h := newHarness(t, builtin(rules.BuiltinTeamSpike), builtin(rules.BuiltinUnpricedModel), creep, anomaly)
	rng := rand.New(rand.NewPCG(1, 2))
	end := monday.Add(5 * 7 * 24 * time.Hour)
	for m := monday; m.Before(end); m = m.Add(time.Minute) {
		for _, team := range []string{"search", "support"} {
			h.e.Add(row(m.Add(30*time.Second), team, diurnal(rng, m)))
		}
		h.eval(m.Add(time.Minute + 15*time.Second))
	}
	if len(h.fired) != 0 || len(h.solved) != 0 {
		t.Errorf("5 weeks without incident: fired %v, resolved %v; want none", h.fired, h.solved)
	}
}

func TestSpikeFiresOnceAndResolvesOnce(t *testing.T) {
	h := newHarness(t, builtin(rules.BuiltinTeamSpike))
	rng := rand.New(rand.NewPCG(3, 4))
	start := monday.Add(4 * 7 * 24 * time.Hour).Add(10 * time.Hour) // Monday of week 5, 10:00
	spikeFrom, spikeTo := start.Add(time.Hour), start.Add(time.Hour+15*time.Minute)
	for m := monday; m.Before(start.Add(3 * time.Hour)); m = m.Add(time.Minute) {
		v := diurnal(rng, m)
		if !m.Before(spikeFrom) && m.Before(spikeTo) {
			v *= 3
		}
		h.e.Add(row(m.Add(30*time.Second), "search", v))
		h.e.Add(row(m.Add(30*time.Second), "support", diurnal(rng, m)))
		if !m.Before(start) {
			// Evaluate four times a minute, as the alerter does every second.
			for s := 15; s < 60; s += 15 {
				h.eval(m.Add(time.Duration(s) * time.Second))
			}
		}
	}
	// The 15-minute sum reaches twice the usual (about $1.5 → $3) in the 9th spike minute,
	// while that minute is still filling (for: 0); it falls to 90 % of the level 8 minutes
	// after the spike, and the alert resolves 5 minutes (keep_firing_for) later.
	if got, want := strings.Join(h.fired, "; "), "team_spike team=search 02-02 11:08"; got != want {
		t.Errorf("fired = %q, want %q", got, want)
	}
	if got, want := strings.Join(h.solved, "; "), "team_spike team=search 02-02 11:29"; got != want {
		t.Errorf("resolved = %q, want %q", got, want)
	}
}

func TestCreepFiresOnTheThirdDayAboveGrowth(t *testing.T) {
	creep := rules.Rule{Name: "creep", Kind: rules.Creep, Measure: rules.Cost, GroupBy: []string{"team"}, GrowthMilli: 30_000,
		For: 72 * time.Hour, KeepFiringFor: time.Hour, ResolvePercent: 90}
	h := newHarness(t, creep)
	// $100 a day for 21 days, then 5 % more every day (rounded down to the picodollar).
	// Week over week, growth first exceeds 30 % on day 29 (31.8 %); held on days 29, 30 and
	// 31, the rule fires once day 31 is complete: day 32 (2026-02-06), 00:00 plus lateness.
	spend := int64(100 * usd)
	for d := 0; d < 40; d++ {
		if d >= 21 {
			spend = spend * 105 / 100
		}
		day := monday.AddDate(0, 0, d)
		h.e.Add(row(day.Add(12*time.Hour), "search", spend))
		for hr := 0; hr < 24; hr++ {
			h.eval(day.Add(time.Duration(hr)*time.Hour + 5*time.Minute))
		}
	}
	if got, want := strings.Join(h.fired, "; "), "creep team=search 02-06 00:05"; got != want {
		t.Errorf("fired = %q, want %q", got, want)
	}
	if len(h.solved) != 0 {
		t.Errorf("resolved = %v, want none while the creep goes on", h.solved)
	}
}

func TestFlapAroundThresholdPagesOnce(t *testing.T) {
	r := rules.Rule{Name: "flap", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"}, Window: 5 * time.Minute,
		Above: 10 * usd, KeepFiringFor: 5 * time.Minute, ResolvePercent: 80}
	h := newHarness(t, r)
	start := monday
	// $1.90 and $2.10 in turn: the 5-minute sum is $9.90, $10.10, $9.90, … for an hour,
	// then nothing.
	for i := 0; i < 90; i++ {
		m := start.Add(time.Duration(i) * time.Minute)
		if i < 60 {
			v := int64(190) * usd / 100
			if i%2 == 1 {
				v = 210 * usd / 100
			}
			h.e.Add(row(m.Add(time.Second), "search", v))
		}
		h.eval(m.Add(59 * time.Second))
		h.eval(m.Add(time.Minute + 15*time.Second))
	}
	if len(h.fired) != 1 || len(h.solved) != 1 {
		t.Fatalf("fired %v, resolved %v; want one of each", h.fired, h.solved)
	}
	// Minutes 0-4 sum to $9.90; minutes 1-5 to $10.10, which fires while minute 5 fills.
	// The sum never drops to 80 % ($8) while the flapping goes on; after the last event
	// (minute 59) minutes 56-60 sum to $8.00, judged once minute 60 is complete (01:01:10),
	// and the alert resolves keep_firing_for (5m) after that evaluation (01:01:15).
	if got, want := h.fired[0], "flap team=search 01-05 00:05"; got != want {
		t.Errorf("fired = %q, want %q", got, want)
	}
	if got, want := h.solved[0], "flap team=search 01-05 01:06"; got != want {
		t.Errorf("resolved = %q, want %q", got, want)
	}
}

func TestForCountsCompleteMinutesAndLateEvents(t *testing.T) {
	r := rules.Rule{Name: "hot", Kind: rules.Threshold, Measure: rules.Requests, Window: time.Minute, Above: 2,
		For: 2 * time.Minute, KeepFiringFor: 0, ResolvePercent: 100}
	e := New([]rules.Rule{r}, nil)
	add := func(at time.Time, n int) {
		for i := 0; i < n; i++ {
			e.Add(&batch.Row{Time: at})
		}
	}
	verdict := func(now time.Time) string {
		res := e.Evaluate(now)
		if len(res) == 0 {
			return "clear"
		}
		return res[0].Verdict.String()
	}
	add(monday.Add(10*time.Second), 3) // minute 0: 3 requests
	if got := verdict(monday.Add(50 * time.Second)); got != "pending" {
		t.Errorf("minute 0 filling: %s, want pending (for needs complete minutes)", got)
	}
	add(monday.Add(70*time.Second), 2) // minute 1: 2 requests, not above 2
	if got := verdict(monday.Add(2*time.Minute + 11*time.Second)); got != "clear" {
		t.Errorf("minute 1 complete with 2: %s, want clear", got)
	}
	// A late event for minute 1 arrives after it was judged: minute 1 now has 3.
	add(monday.Add(80*time.Second), 1)
	if got := verdict(monday.Add(2*time.Minute + 12*time.Second)); got != "hold" {
		t.Errorf("after the late event: %s, want hold (minutes 0 and 1 both above 2)", got)
	}
	// A minute is complete only after the lateness: at 02:05 minute 1 is not yet complete.
	if got := verdict(monday.Add(2*time.Minute + 5*time.Second)); got != "pending" {
		t.Errorf("before minute 1 is complete: %s, want pending", got)
	}
}

func TestThresholdShareAndFloors(t *testing.T) {
	h := newHarness(t, builtin(rules.BuiltinUntaggedShare))
	// Untagged as tag_coverage counts it: the unallocated team, and a team without a cost
	// centre, are not attributed. $0.50 of $4.50 is 11.1 %, above 10 %, but under the $1
	// floor: nothing.
	attributed := row(monday, "search", 4*usd)
	attributed.Env, attributed.CostCenter = "prod", "cc-1"
	h.e.Add(row(monday, "unallocated", usd/4))
	h.e.Add(row(monday, "search", usd/4))
	h.e.Add(attributed)
	h.eval(monday.Add(30 * time.Second))
	if len(h.last) != 0 {
		t.Fatalf("under the floor: %+v", h.last)
	}
	// Another $1 untagged: $1.50 of $5.50 = 27 %: fires now (for 0), level = 10 % of total.
	h.e.Add(row(monday.Add(40*time.Second), "", usd))
	h.eval(monday.Add(50 * time.Second))
	if len(h.last) != 1 || h.last[0].Verdict != Hold || h.last[0].Value != 3*usd/2 || h.last[0].Level != 55*usd/100 {
		t.Fatalf("results = %+v, want hold with value $1.50 and level $0.55", h.last)
	}
	if len(h.fired) != 1 {
		t.Errorf("fired = %v", h.fired)
	}
}

func TestUnpricedModelFiresOnFirstEventAndResolvesAfterAnHourAndTen(t *testing.T) {
	h := newHarness(t, builtin(rules.BuiltinUnpricedModel))
	h.e.Add(&batch.Row{Time: monday.Add(5 * time.Second), Provider: "acme", Model: "acme-7"})
	h.e.Add(&batch.Row{Time: monday.Add(6 * time.Second), Provider: "openai", Model: "gpt-4o", Priced: true, CostPico: 5})
	for s := 10; s < 2*3600; s += 10 {
		h.eval(monday.Add(time.Duration(s) * time.Second))
	}
	if got, want := strings.Join(h.fired, ";"), "unpriced_model provider=acme model=acme-7 01-05 00:00"; got != want {
		t.Errorf("fired = %q, want %q", got, want)
	}
	// The event leaves the 1-hour window once minute 60 is complete (01:01:10), and the alert
	// resolves keep_firing_for (10m) later.
	if got, want := strings.Join(h.solved, ";"), "unpriced_model provider=acme model=acme-7 01-05 01:11"; got != want {
		t.Errorf("resolved = %q, want %q", got, want)
	}
}

func TestAnomalyUsesDayTypeAndWarmsUp(t *testing.T) {
	r := rules.Rule{Name: "seasonal", Kind: rules.Anomaly, Measure: rules.Cost, GroupBy: []string{"team"}, Window: time.Hour,
		Days: 28, MinHistory: 4, FactorMilli: 1500, ScoreMilli: 4000, KeepFiringFor: time.Hour, ResolvePercent: 90}
	e := New([]rules.Rule{r}, nil)
	// 10:00-11:00 costs $10 on weekdays and $2 on weekend days, for 4 weeks.
	for d := 0; d < 28; d++ {
		day := monday.AddDate(0, 0, d)
		v := int64(10 * usd)
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			v = 2 * usd
		}
		e.Add(row(day.Add(10*time.Hour+30*time.Minute), "search", v))
		if d == 6 { // the first Sunday: only 1 weekend day known, still warming up
			e.Add(row(day.Add(10*time.Hour+40*time.Minute), "search", 50*usd))
			if res := e.Evaluate(day.Add(11*time.Hour + time.Minute)); len(res) != 0 {
				t.Errorf("warm-up: %+v, want no verdict before 4 same-type days", res)
			}
		}
	}
	sat := monday.AddDate(0, 0, 33) // Saturday of week 5
	e.Add(row(sat.Add(10*time.Hour+30*time.Minute), "search", 6*usd))
	res := e.Evaluate(sat.Add(11*time.Hour + time.Minute))
	// Weekend baseline: 7 past weekend days within 28 days; Sunday the 11th had $52, the
	// others $2: median $2, MAD 0, level max($2 × 1.5, $2) = $3. $6 fires.
	if len(res) != 1 || res[0].Verdict != Hold || res[0].Value != 6*usd || res[0].Baseline != 2*usd || res[0].Level != 3*usd {
		t.Fatalf("Saturday $6: %+v", res)
	}
	mon := monday.AddDate(0, 0, 35)
	e.Add(row(mon.Add(10*time.Hour+30*time.Minute), "search", 12*usd))
	if res := e.Evaluate(mon.Add(11*time.Hour + time.Minute)); len(res) != 0 {
		t.Errorf("Monday $12 against a $10 weekday baseline: %+v, want clear", res)
	}
}

func TestReloadKeepsWindowsOfUnchangedRules(t *testing.T) {
	r := rules.Rule{Name: "t", Kind: rules.Threshold, Measure: rules.Cost, Window: time.Hour, Above: usd, ResolvePercent: 50}
	e := New([]rules.Rule{r}, nil)
	e.Add(row(monday, "a", 2*usd))
	r2 := r
	r2.Above = 3 * usd // a new level only: same windows
	e2 := New([]rules.Rule{r2}, e)
	if !e2.Kept("t") {
		t.Fatal("unchanged windows not kept")
	}
	if res := e2.Evaluate(monday.Add(2 * time.Minute)); len(res) != 1 || res[0].Value != 2*usd || res[0].Verdict != Elevated {
		t.Errorf("after reload: %+v, want the $2 kept, elevated between $1.50 and $3", res)
	}
	r3 := r
	r3.Window = 2 * time.Hour
	if e3 := New([]rules.Rule{r3}, e2); e3.Kept("t") {
		t.Error("a rule with a new window kept the old buckets")
	}
}
