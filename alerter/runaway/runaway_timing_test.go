package runaway

import (
	"fmt"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// BenchmarkEvaluate is one rule's evaluation (each Tick, every second) over workflows of 30
// active minutes each, 24 h window: when Firing=1 every workflow is over the level, else none.
func BenchmarkEvaluate(b *testing.B) {
	for _, c := range []struct{ n, firing int }{{1_000, 0}, {100_000, 0}, {1_000, 1}, {100_000, 1}} {
		n := c.n
		b.Run(fmt.Sprintf("Workflows=%d/Firing=%d", n, c.firing), func(b *testing.B) {
			now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
			f := NewFlows(24 * time.Hour)
			for i := range n {
				for m := range 30 {
					f.Add(fmt.Sprintf("wf-%d", i), "agents", now.Add(-time.Duration(i%1400+m)*time.Minute), usd)
				}
			}
			r := &rules.Runaway{FactorMilli: 5000, MinPico: 10 * usd, Window: 24 * time.Hour, MinWorkflows: 1}
			want := n
			if c.firing == 0 {
				r.MinPico, want = 1000*usd, 0
			}
			bs := map[string]Baseline{"agents": {Median: 4 * usd, Workflows: 100}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				f.Prune(now)
				if got := f.Evaluate(r, bs, now); len(got) != want {
					b.Fatalf("%d results, want %d", len(got), want)
				}
			}
		})
	}
}
