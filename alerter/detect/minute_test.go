package detect

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/alert"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// TestOneSpikeOnePageAtEverySecond is a property over the whole minute: a single burst, above
// the threshold on its own, arriving at any second of a minute and up to 9 s after its event
// time (within the lateness), evaluated every second as the alerter does, takes its alert
// through inactive → (pending →) firing → resolved exactly once, whatever `for` and
// keep_firing_for are. It fires at the second the burst arrives (for: 0) or once `for`
// complete minutes hold it, and resolves keep_firing_for after the first complete minute
// whose window no longer holds it.
func TestOneSpikeOnePageAtEverySecond(t *testing.T) {
	shapes := []struct{ window, hold time.Duration }{
		{time.Minute, 0}, {time.Minute, 30 * time.Second}, {time.Minute, time.Minute},
		{5 * time.Minute, 0}, {5 * time.Minute, time.Minute}, {5 * time.Minute, 3 * time.Minute}, {5 * time.Minute, 5 * time.Minute},
	}
	keeps := []time.Duration{0, time.Second, 2 * time.Minute}
	delays := []time.Duration{0, 4 * time.Second, 9 * time.Second}
	spikeMinute := monday.Add(3 * time.Hour)
	for _, sh := range shapes {
		for _, keep := range keeps {
			r := rules.Rule{Name: "burst", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"},
				Window: sh.window, Above: 5 * usd, For: sh.hold, KeepFiringFor: keep, ResolvePercent: 90}
			k := time.Duration(r.ForSteps()) * time.Minute
			resolveAt := sh.window + time.Minute + DefaultLateness + keep
			for _, delay := range delays {
				for sec := 0; sec < 60; sec++ {
					event := spikeMinute.Add(time.Duration(sec) * time.Second)
					arrive := event.Add(delay)
					var want []string
					if k == 0 {
						want = []string{"inactive→firing " + fmtOffset(arrive.Sub(spikeMinute))}
					} else {
						want = []string{"inactive→pending " + fmtOffset(arrive.Sub(spikeMinute)), "pending→firing " + fmtOffset(k+DefaultLateness)}
					}
					want = append(want, "firing→resolved "+fmtOffset(resolveAt))
					got := oneSpike(r, event, arrive, spikeMinute, resolveAt+time.Minute)
					if strings.Join(got, ", ") != strings.Join(want, ", ") {
						t.Errorf("window %s, for %s, keep_firing_for %s, burst at :%02d arriving %s later:\n got %v\nwant %v",
							sh.window, sh.hold, keep, sec, delay, got, want)
					}
				}
			}
		}
	}
}

// oneSpike adds a $5.40 burst with event time event when the clock reaches arrive, evaluates
// r every second from a minute before start to start+until, and returns the transitions of
// the group's alert as "from→to offset-from-start".
func oneSpike(r rules.Rule, event, arrive, start time.Time, until time.Duration) []string {
	e := New([]rules.Rule{r}, nil)
	a := alert.Alert{State: alert.Inactive}
	var got []string
	for now := start.Add(-time.Minute); !now.After(start.Add(until)); now = now.Add(time.Second) {
		if now.Equal(arrive) {
			e.Add(row(event, "search", 540*usd/100))
		}
		sig := alert.Cleared
		if res := e.Evaluate(now); len(res) == 1 {
			sig = map[Verdict]alert.Signal{Elevated: alert.Elevated, Pending: alert.Met, Hold: alert.Held}[res[0].Verdict]
		}
		if tr, ok := a.Step(sig, now, r.KeepFiringFor); ok {
			got = append(got, fmt.Sprintf("%s→%s %s", tr.From, tr.To, fmtOffset(now.Sub(start))))
		}
	}
	return got
}

// fmtOffset prints an offset from the spike's minute as minutes:seconds ("+1:10").
func fmtOffset(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("+%d:%02d", s/60, s%60)
}

// TestContributorsSplitTheIncreaseByTheMixBefore: a change rule's increase (value − median)
// is split among a dimension's values by their mix in the window before: each value's
// expected amount is the baseline × its share of that window.
func TestContributorsSplitTheIncreaseByTheMixBefore(t *testing.T) {
	r := rules.Rule{Name: "minute", Kind: rules.Change, Measure: rules.Cost, GroupBy: []string{"team"}, Window: time.Minute,
		Period: time.Hour, Periods: 2, MinPeriods: 2, FactorMilli: 2000, ScoreMilli: 3000, ResolvePercent: 90}
	e := New([]rules.Rule{r}, nil)
	add := func(at time.Time, model string, cents int64) {
		e.Add(&batch.Row{Time: at, Team: "search", Model: model, Feature: "chat", Priced: true, CostPico: cents * usd / 100})
	}
	// Hours 1 and 2: $0.10 a minute from model a, $6 an hour: the baseline for a minute is $0.10.
	for m := 60; m < 180; m++ {
		add(monday.Add(time.Duration(m)*time.Minute), "a", 10)
	}
	before, now := monday.Add(3*time.Hour+29*time.Minute), monday.Add(3*time.Hour+30*time.Minute)
	add(before, "a", 10)
	add(before, "b", 10)
	add(now, "a", 10)
	add(now, "b", 50)
	res := e.Evaluate(now.Add(40 * time.Second))
	if len(res) != 1 || res[0].Verdict != Hold || res[0].Value != 60*usd/100 || res[0].Baseline != 10*usd/100 {
		t.Fatalf("results = %+v, want hold at $0.60 against $0.10", res)
	}
	// Increase $0.50. The minute before was half a, half b: each expected $0.05. Model a
	// spent $0.10 (+$0.05, 10 %), model b $0.50 (+$0.45, 90 %); feature chat all of it.
	want := []Contributor{
		{Dimension: "feature", Value: "chat", Amount: 60 * usd / 100, Increase: 50 * usd / 100, ShareMilli: 100_000, OfIncrease: true},
		{Dimension: "model", Value: "b", Amount: 50 * usd / 100, Increase: 45 * usd / 100, ShareMilli: 90_000, OfIncrease: true},
		{Dimension: "model", Value: "a", Amount: 10 * usd / 100, Increase: 5 * usd / 100, ShareMilli: 10_000, OfIncrease: true},
		{Dimension: "prompt_version", Value: "", Amount: 60 * usd / 100, Increase: 50 * usd / 100, ShareMilli: 100_000, OfIncrease: true},
		{Dimension: "workflow", Value: "", Amount: 60 * usd / 100, Increase: 50 * usd / 100, ShareMilli: 100_000, OfIncrease: true},
	}
	if got := res[0].Contributors; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("contributors =\n%+v\nwant\n%+v", got, want)
	}
}
