package detect

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// BenchmarkEvaluate measures one evaluation of the built-in rules (the team spike against 4
// weeks of hourly history, and the unpriced-model threshold) plus a 1-hour threshold, over
// groups=N active teams. The alerter evaluates once a second.
func BenchmarkEvaluate(b *testing.B) {
	for _, groups := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			hourly := rules.Rule{Name: "hourly", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"},
				Window: time.Hour, Above: 100 * usd, KeepFiringFor: 5 * time.Minute, ResolvePercent: 90}
			e := New([]rules.Rule{builtin(rules.BuiltinTeamSpike), builtin(rules.BuiltinUnpricedModel), hourly}, nil)
			now := monday.Add(29 * 24 * time.Hour)
			for g := 0; g < groups; g++ {
				team := fmt.Sprintf("team-%05d", g)
				for h := 28 * 24; h > 0; h-- {
					e.AddHistory(rules.BuiltinTeamSpike, History{Labels: map[string]string{"team": team}, At: now.Add(-time.Duration(h) * time.Hour),
						Hourly: true, Value: 6 * usd, Measure: rules.Cost})
				}
				for m := 60; m > 0; m-- {
					e.Add(&batch.Row{Time: now.Add(-time.Duration(m) * time.Minute), Team: team, Model: "gpt-4o", Priced: true, CostPico: usd / 10})
				}
			}
			runtime.GC() // the setup's garbage is not the evaluation's cost
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if res := e.Evaluate(now); len(res) != 0 {
					b.Fatalf("%d results, want none", len(res))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(groups), "ns/group")
		})
	}
}

// BenchmarkAdd measures counting one enriched row into the same three rules; each row of a
// workflow of its own, as an agent platform's are.
func BenchmarkAdd(b *testing.B) {
	e := New([]rules.Rule{builtin(rules.BuiltinTeamSpike), builtin(rules.BuiltinUnpricedModel), builtin(rules.BuiltinUntaggedShare)}, nil)
	rows := make([]batch.Row, 100_000)
	for i := range rows {
		rows[i] = batch.Row{Time: monday.Add(time.Duration(i) * 10 * time.Millisecond), Team: fmt.Sprintf("team-%d", i%50), Model: "gpt-4o",
			Feature: "agents", WorkflowID: fmt.Sprintf("wf-%d", i), Priced: true, CostPico: 12345}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Add(&rows[i%len(rows)])
	}
}
