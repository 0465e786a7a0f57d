// Package runaway finds runaway workflows: a workflow whose running cost is many times what a
// workflow of its feature usually costs. Flows holds each workflow's cost per minute, as the
// enriched stream reports it; a Baseline is a feature's median cost per completed workflow,
// which the alerter reads from ClickHouse (workflow_costs); Evaluate compares the two for a
// rule. Amounts are integer picodollars.
package runaway

import (
	"sort"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// DefaultMaxFlows bounds the workflows held; events of further workflows are not counted
// (Flows.Refused) until older ones age out.
const DefaultMaxFlows = 200_000

// Flows is the cost of each workflow per minute over the last Keep. It is not safe for
// concurrent use.
type Flows struct {
	// Keep is the longest window of the rules: minutes older than it are dropped.
	Keep time.Duration
	// Max bounds the workflows held (DefaultMaxFlows when 0); Refused counts the events
	// not counted because of it.
	Max     int
	Refused int64
	flows   map[string]*flow
	// pruned is the minute of the last Prune: minutes leave the window once a minute.
	pruned int64
}

type flow struct {
	// feature is that of the workflow's first event seen, as workflow_costs attributes it.
	feature string
	first   time.Time
	mins    []minute // ascending, one per minute with cost
	// total is the sum of mins: a workflow whose total is under a level is not over it in
	// any window, and Evaluate skips it without reading its minutes.
	total int64
}

type minute struct {
	at   int64 // unix minute
	cost int64
}

// NewFlows returns empty flows keeping keep.
func NewFlows(keep time.Duration) *Flows {
	return &Flows{Keep: keep, flows: map[string]*flow{}}
}

// Add counts one event of workflow (none: ignored) at t.
func (f *Flows) Add(workflow, feature string, t time.Time, cost int64) {
	if workflow == "" {
		return
	}
	fl := f.flows[workflow]
	if fl == nil {
		max := f.Max
		if max == 0 {
			max = DefaultMaxFlows
		}
		if len(f.flows) >= max {
			f.Refused++
			return
		}
		fl = &flow{feature: feature, first: t}
		f.flows[workflow] = fl
	}
	if t.Before(fl.first) {
		fl.feature, fl.first = feature, t
	}
	fl.total += cost
	at := t.Unix() / 60
	if t.Unix() < 0 && t.Unix()%60 != 0 {
		at--
	}
	i := sort.Search(len(fl.mins), func(i int) bool { return fl.mins[i].at >= at })
	switch {
	case i < len(fl.mins) && fl.mins[i].at == at:
		fl.mins[i].cost += cost
	default:
		fl.mins = append(fl.mins, minute{})
		copy(fl.mins[i+1:], fl.mins[i:])
		fl.mins[i] = minute{at: at, cost: cost}
	}
}

// Prune drops the minutes before now − Keep, and the workflows left without any. It does
// the work once a minute; Evaluate does not depend on it.
func (f *Flows) Prune(now time.Time) {
	m := now.Unix() / 60
	if m == f.pruned {
		return
	}
	f.pruned = m
	from := now.Truncate(time.Minute).Add(-f.Keep).Add(time.Minute).Unix() / 60
	for id, fl := range f.flows {
		i := sort.Search(len(fl.mins), func(i int) bool { return fl.mins[i].at >= from })
		if i == len(fl.mins) {
			delete(f.flows, id)
			continue
		}
		for _, m := range fl.mins[:i] {
			fl.total -= m.cost
		}
		fl.mins = fl.mins[i:]
	}
}

// Len is the number of workflows held.
func (f *Flows) Len() int { return len(f.flows) }

// Baseline is a feature's usual cost per workflow: the median over Workflows completed
// workflows (the mean of the two middle ones for an even count, rounded down).
type Baseline struct {
	Median    int64
	Workflows int
}

// Result is one workflow over a rule's level.
type Result struct {
	Workflow, Feature string
	// Value is the workflow's cost over the rule's window; Level what it reached,
	// max(Baseline × factor, min_usd).
	Value, Level int64
	Baseline     Baseline
	// First is the workflow's first event still held.
	First time.Time
}

// Level is what a workflow of a feature with baseline b must cost to fire r: factor × the
// median (rounded down to the picodollar) and at least min_usd; 0 when the baseline knows too few workflows or
// the level would be 0 (nothing to compare with).
func Level(r *rules.Runaway, b Baseline) int64 {
	if b.Workflows < r.MinWorkflows {
		return 0
	}
	lvl, err := rules.MulDiv(b.Median, r.FactorMilli, 1000)
	if err != nil {
		return 0
	}
	return max(lvl, r.MinPico)
}

// Evaluate returns, by workflow id, the workflows whose cost over r's window up to now
// reaches their feature's level. The window is the minute now falls in and the minutes
// before it, r.Window in all.
func (f *Flows) Evaluate(r *rules.Runaway, baselines map[string]Baseline, now time.Time) []Result {
	from := now.Truncate(time.Minute).Add(-r.Window).Add(time.Minute).Unix() / 60
	var out []Result
	for id, fl := range f.flows {
		b, ok := baselines[fl.feature]
		if !ok {
			continue
		}
		lvl := Level(r, b)
		if lvl <= 0 || fl.total < lvl {
			continue
		}
		var v int64
		first := int64(-1)
		for _, m := range fl.mins {
			if m.at >= from && m.at <= now.Unix()/60 {
				v += m.cost
				if first < 0 {
					first = m.at
				}
			}
		}
		if v >= lvl {
			out = append(out, Result{Workflow: id, Feature: fl.feature, Value: v, Level: lvl, Baseline: b, First: time.Unix(first*60, 0).UTC()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workflow < out[j].Workflow })
	return out
}
