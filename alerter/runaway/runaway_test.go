package runaway

import (
	"reflect"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

const usd = rules.PicoPerUSD

func TestLevel(t *testing.T) {
	r := &rules.Runaway{FactorMilli: 5500, MinPico: 10 * usd, MinWorkflows: 3}
	f := func(b Baseline, want int64) {
		t.Helper()
		if got := Level(r, b); got != want {
			t.Errorf("Level(%+v) = %d, want %d", b, got, want)
		}
	}
	f(Baseline{Median: 4 * usd, Workflows: 3}, 22*usd)   // 5.5 × 4
	f(Baseline{Median: 1 * usd, Workflows: 100}, 10*usd) // min_usd
	f(Baseline{Median: 100 * usd, Workflows: 2}, 0)      // too few workflows
	f(Baseline{Median: 3, Workflows: 3}, 10*usd)         // 16.5 pico, rounded down, under min_usd
	r.MinPico = 0
	f(Baseline{Median: 3, Workflows: 3}, 16)
	f(Baseline{Median: 0, Workflows: 3}, 0) // nothing to compare with: never fires
}

// The window is the minute now falls in and the ones before it, Window in all; a workflow's
// feature is its first event's, whatever order events arrive in; Prune keeps what the
// longest window needs.
func TestFlowsEvaluate(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 30, 0, time.UTC)
	f := NewFlows(time.Hour)
	f.Add("wf-1", "agents", now.Add(-59*time.Minute-30*time.Second), 5*usd) // 11:01:00: in the hour
	f.Add("wf-1", "agents", now.Add(-60*time.Minute), 100*usd)              // 11:00:30: out
	f.Add("wf-1", "agents", now, 4*usd)
	f.Add("wf-1", "agents", now.Add(time.Second), 1*usd) // same minute
	f.Add("wf-2", "search", now.Add(-time.Minute), 50*usd)
	f.Add("wf-2", "agents", now.Add(-2*time.Minute), 1*usd) // earlier: wf-2 is agents'
	f.Add("", "agents", now, 1000*usd)                      // no workflow: not tracked
	r := &rules.Runaway{Name: "r", FactorMilli: 2000, MinPico: 10 * usd, Window: time.Hour, MinWorkflows: 1}
	bs := map[string]Baseline{"agents": {Median: 4 * usd, Workflows: 9}}
	got := f.Evaluate(r, bs, now)
	want := []Result{
		{Workflow: "wf-1", Feature: "agents", Value: 10 * usd, Level: 10 * usd, Baseline: bs["agents"], First: time.Date(2026, 11, 20, 11, 1, 0, 0, time.UTC)},
		{Workflow: "wf-2", Feature: "agents", Value: 51 * usd, Level: 10 * usd, Baseline: bs["agents"], First: time.Date(2026, 11, 20, 11, 58, 0, 0, time.UTC)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Evaluate = %+v\nwant %+v", got, want)
	}
	if f.Len() != 2 {
		t.Errorf("Len = %d, want 2", f.Len())
	}
	f.Prune(now.Add(59 * time.Minute)) // 12:59:30: keeps 12:00 on, wf-2 has nothing left
	if f.Len() != 1 {
		t.Errorf("after Prune, Len = %d, want 1", f.Len())
	}
	if got := f.Evaluate(r, bs, now.Add(59*time.Minute)); len(got) != 0 {
		t.Errorf("an hour later = %+v, want none (5 USD left)", got)
	}
	f.Max = 1
	f.Add("wf-3", "agents", now, usd)
	if f.Refused != 1 || f.Len() != 1 {
		t.Errorf("past Max: refused %d, len %d; want 1, 1", f.Refused, f.Len())
	}
}
