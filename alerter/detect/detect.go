// Package detect evaluates the rules over the in-memory windows: for each rule and group it
// says whether the rule's condition holds now, has held over every complete step that `for`
// spans, or has cleared (the resolve condition, with hysteresis).
//
// A minute is complete once Lateness has passed after its end, so events arriving a little
// late still count in the step they belong to; every evaluation recomputes the windows from
// the buckets, so a late event changes the verdict of the steps it falls into. The steps
// after the last complete one — the one still filling and, for the first Lateness of a step,
// the one that just ended — are provisional: each is judged on its own window, so a window
// holds the same minutes at every second of a step and a spike in the minute that just ended
// is never out of sight. A provisional step that fires makes an alert pending, or firing
// when `for` is 0: that is the path that pages within seconds of a burst. `for` counts only
// complete steps, and resolving only ever looks at complete steps, since a filling bucket
// always looks low.
//
// Warm-up: a Change rule judges a group only once MinPeriods of its baseline periods lie
// within the group's known history (from ClickHouse at start-up, then the stream); an Anomaly
// rule once MinHistory past days of the same type (weekday/weekend) are known; a Creep rule
// once 14 days are known. Until then the group never fires through that rule — Threshold
// rules and budgets still apply from the first event.
package detect

import (
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/window"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// DefaultLateness is how long after a minute ends it still waits for late events before it
// counts as complete.
const DefaultLateness = 10 * time.Second

// DefaultMaxGroups bounds the groups one rule holds. Group values (team, model, …) are chosen
// by whoever sends events, so without a cap a client inventing a team per request would grow
// the alerter without end; a rule that holds this many refuses new groups (Engine.Refused)
// until idle ones are evicted. A group of the built-in team_spike rule keeps about 6 KB.
const DefaultMaxGroups = 10_000

// Verdict is the outcome of one rule for one group.
type Verdict int

// Verdicts.
const (
	// Clear: the resolve condition holds on the last complete step (or the group cannot be
	// judged yet).
	Clear Verdict = iota
	// Elevated: neither firing nor cleared (between the resolve level and the firing level).
	Elevated
	// Pending: the condition holds, but not yet over every complete step of `for`.
	Pending
	// Hold: the condition holds over every complete step of `for` (or now, when for is 0).
	Hold
)

func (v Verdict) String() string {
	return [...]string{"clear", "elevated", "pending", "hold"}[v]
}

// Contributor is one value of a dimension (model, feature, workflow, prompt_version) and its
// part in a group's window and in the window's increase (see top).
type Contributor struct {
	Dimension, Value string
	// Amount is the value's sum over the window; Increase how much of it is above what the
	// value would have had at the baseline.
	Amount, Increase int64
	// ShareMilli is Increase as a share of the group's increase, in thousandths of a percent
	// (rounded toward zero; negative for a value that fell). When the group has no increase
	// (OfIncrease false) it is the share of the window's amount instead.
	ShareMilli int64
	OfIncrease bool
	// New is set for a model or prompt version that had spent nothing before the window, as
	// far back as the group's buckets reach (the rule's minutes and one window more): a likely
	// cause of the spike. FirstSeen is the start of its first minute with spend.
	New       bool
	FirstSeen time.Time
}

// Result is a rule's verdict for one group that is not Clear.
type Result struct {
	Rule    *rules.Rule
	Labels  map[string]string // the group's dimension values
	Verdict Verdict
	// Value is the measure over the window; Level what it must exceed; Baseline the
	// median (Change, Anomaly), the previous week (Creep) or the threshold.
	Value, Level, Baseline int64
	// At is the end of the step the values belong to.
	At           time.Time
	Contributors []Contributor
	// Causes split a cost group's increase into volume, size, mix and cache (Explain); nil
	// when it cannot be split.
	Causes []Cause
	key    string
}

// Engine holds the windows of every rule. It is not safe for concurrent use.
type Engine struct {
	rules    []*ruleState
	Lateness time.Duration
	// Late counts rows older than a rule's buckets, which cannot count any more.
	Late int64
	// MaxGroups bounds the groups of each rule (default DefaultMaxGroups). Refused counts
	// the rows, live or history, that a rule did not count because they would have opened a
	// group past the cap; Evicted the groups dropped because all their buckets had expired.
	MaxGroups        int
	Refused, Evicted int64
	// key is Add's scratch for a group's key, so that counting a row into an existing group
	// allocates nothing.
	key []byte
}

type ruleState struct {
	r              *rules.Rule
	kept           bool // windows carried over from the previous engine
	minutes, hours int
	groups         map[string]*group
	totals         map[rules.Measure]*window.Series
	// scratch holds baseline samples during an evaluation, so that judging a group does not
	// allocate.
	scratch [3][]int64
}

type group struct {
	labels map[string]string
	s      *window.Series
	// last is the newest minute the group has data for; once it is older than every bucket
	// the rule keeps, the group holds nothing and is evicted.
	last int64
	// profile splits a cost group's spend into calls, tokens and prices (Explain); nil for
	// other measures, and where contributors are not tracked.
	profile *window.Profile
}

// New builds an engine for rs. Rules of prev that are unchanged keep their windows, so a
// reload loses no history for them.
func New(rs []rules.Rule, prev *Engine) *Engine {
	e := &Engine{Lateness: DefaultLateness, MaxGroups: DefaultMaxGroups}
	if prev != nil {
		e.Lateness, e.Late, e.MaxGroups, e.Refused, e.Evicted = prev.Lateness, prev.Late, prev.MaxGroups, prev.Refused, prev.Evicted
	}
	for i := range rs {
		r := &rs[i]
		rs := &ruleState{r: r, groups: map[string]*group{}, totals: map[rules.Measure]*window.Series{}}
		rs.minutes, rs.hours = sizes(r)
		if prev != nil {
			for _, old := range prev.rules {
				if sameData(old.r, r) {
					rs.groups, rs.totals, rs.kept = old.groups, old.totals, true
				}
			}
		}
		e.rules = append(e.rules, rs)
	}
	return e
}

// sameData reports whether two rules keep the same windows.
func sameData(a, b *rules.Rule) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Measure == b.Measure && a.ShareOf == b.ShareOf &&
		slices.Equal(a.GroupBy, b.GroupBy) && sizesEqual(a, b)
}

func sizesEqual(a, b *rules.Rule) bool {
	am, ah := sizes(a)
	bm, bh := sizes(b)
	return am == bm && ah == bh
}

// sizes returns the minute and hour buckets a rule needs.
func sizes(r *rules.Rule) (minutes, hours int) {
	k := int(r.ForSteps())
	w := int(r.Window / time.Minute)
	switch r.Kind {
	case rules.Threshold:
		return w + k + 2, 0
	case rules.Change:
		return w + k + 2, r.Periods*int(r.Period/time.Hour) + w/60 + k/60 + 3
	case rules.Anomaly:
		return 0, r.Days*24 + k + 2
	case rules.Creep:
		return 0, (14+k+1)*24 + 2
	}
	return 0, 0
}

// Kept reports whether the named rule kept the windows of the previous engine; a rule that
// did not needs its history loaded.
func (e *Engine) Kept(rule string) bool {
	for _, rs := range e.rules {
		if rs.r.Name == rule {
			return rs.kept
		}
	}
	return false
}

// Rules returns the rules the engine evaluates.
func (e *Engine) Rules() []*rules.Rule {
	out := make([]*rules.Rule, len(e.rules))
	for i, rs := range e.rules {
		out[i] = rs.r
	}
	return out
}

// Add counts a row in every rule.
func (e *Engine) Add(row *batch.Row) {
	m := window.MinuteOf(row.Time.Unix())
	for _, rs := range e.rules {
		for i, meas := range [2]rules.Measure{rs.r.Measure, rs.r.ShareOf} {
			if meas == "" || (i == 0 && rs.r.MinShareMilli == 0) || (i == 1 && meas == rs.r.Measure && rs.r.MinShareMilli > 0) {
				continue // no total needed, or already counted
			}
			if v := window.Value(row, meas); v != 0 {
				rs.total(meas).AddMinute(m, v)
			}
		}
		v := window.Value(row, rs.r.Measure)
		if v == 0 && !(rs.r.Measure == rules.Cost && row.SavingsPico > 0) {
			continue
		}
		e.key = e.key[:0]
		for _, d := range rs.r.GroupBy {
			e.key = append(append(e.key, window.Dimension(row, d)...), 0)
		}
		g := rs.groups[string(e.key)] // no allocation: the compiler looks up without a copy
		if v == 0 {
			// A call the application's cache answered costs nothing, but belongs in its
			// group's profile: a falling hit rate is a cause of a spike (Explain).
			if g != nil && g.profile != nil {
				g.profile.Add(m, row)
			}
			continue
		}
		if g == nil {
			if g = e.newGroup(rs, string(e.key), func(d string) string { return window.Dimension(row, d) }); g == nil {
				continue
			}
		}
		g.last = max(g.last, m)
		if !g.s.AddMinute(m, v) {
			e.Late++
		}
		if g.profile != nil {
			g.profile.Add(m, row)
		}
		if g.s.Contributors != nil {
			for _, d := range [...]struct{ name, value string }{
				{"model", row.Model}, {"feature", row.Feature}, {"workflow", row.WorkflowID}, {"prompt_version", row.PromptVersion},
			} {
				if !slices.Contains(rs.r.GroupBy, d.name) {
					g.s.AddContributor(d.name, d.value, m, v)
				}
			}
		}
	}
}

func (rs *ruleState) total(m rules.Measure) *window.Series {
	t := rs.totals[m]
	if t == nil {
		t = window.NewSeries(rs.minutes, 0, 0)
		rs.totals[m] = t
	}
	return t
}

// newGroup adds a group to rs, or returns nil and counts the refusal when rs holds MaxGroups.
func (e *Engine) newGroup(rs *ruleState, key string, dim func(string) string) *group {
	if len(rs.groups) >= e.MaxGroups {
		e.Refused++
		return nil
	}
	labels := make(map[string]string, len(rs.r.GroupBy))
	for _, d := range rs.r.GroupBy {
		// A decoded row's strings share one buffer per column of its message; a copy keeps a
		// long-lived group from holding that whole buffer.
		labels[d] = strings.Clone(dim(d))
	}
	// Contributors keep one window more than the rule, to compare each with the window
	// before (see top).
	contrib := 0
	if rs.minutes > 0 && rs.minutes <= 240 {
		contrib = rs.minutes + int(rs.r.Window/time.Minute)
	}
	g := &group{labels: labels, s: window.NewSeries(rs.minutes, rs.hours, contrib), last: math.MinInt64}
	if contrib > 0 && rs.r.Measure == rules.Cost {
		g.profile = window.NewProfile(contrib)
	}
	rs.groups[key] = g
	return g
}

// History is one bucket of past data for a rule's group, loaded from ClickHouse.
type History struct {
	Labels map[string]string
	// Minute is set for minute buckets, Hour for hour buckets (older than the minute
	// buckets); exactly one is meaningful, as Hourly says.
	At     time.Time
	Hourly bool
	Value  int64
	// Measure says which measure Value is: the rule's own, or its ShareOf.
	Measure rules.Measure
}

// AddHistory adds past data to the named rule. Totals (for share floors and ShareOf) are
// fed by history rows whose Labels are nil.
func (e *Engine) AddHistory(rule string, h History) {
	for _, rs := range e.rules {
		if rs.r.Name != rule {
			continue
		}
		m := window.MinuteOf(h.At.Unix())
		if h.Labels == nil {
			if !h.Hourly {
				rs.total(h.Measure).AddMinute(m, h.Value)
			}
			continue
		}
		if h.Measure != rs.r.Measure {
			continue
		}
		var key strings.Builder
		for _, d := range rs.r.GroupBy {
			key.WriteString(h.Labels[d])
			key.WriteByte(0)
		}
		g := rs.groups[key.String()]
		if g == nil {
			if g = e.newGroup(rs, key.String(), func(d string) string { return h.Labels[d] }); g == nil {
				continue
			}
		}
		if h.Hourly {
			g.s.AddHour(m/60, h.Value)
			g.last = max(g.last, m/60*60+59)
		} else {
			g.s.AddMinute(m, h.Value)
			g.last = max(g.last, m)
		}
	}
}

// Span is how far back a rule needs history: its minute buckets and its hour buckets.
func Span(r *rules.Rule) (minutes, hours time.Duration) {
	m, h := sizes(r)
	return time.Duration(m) * time.Minute, time.Duration(h) * time.Hour
}

// Groups is the number of groups the engine holds, over all rules.
func (e *Engine) Groups() int {
	n := 0
	for _, rs := range e.rules {
		n += len(rs.groups)
	}
	return n
}

// Evaluate judges every group of every rule at now and returns the results that are not
// Clear, ordered by rule and labels. Groups whose newest data is older than every bucket of
// their rule are evicted first: they hold nothing, and would only take room under MaxGroups.
func (e *Engine) Evaluate(now time.Time) []Result {
	var out []Result
	nowMin := window.MinuteOf(now.Unix())
	for _, rs := range e.rules {
		keep := int64(max(rs.minutes, rs.hours*60))
		for key, g := range rs.groups {
			if nowMin-g.last > keep {
				delete(rs.groups, key)
				e.Evicted++
			}
		}
		out = rs.evaluate(now, e.Lateness, out)
	}
	return out
}

// point is the rule's value and level at the end of one step.
type point struct {
	value, level, baseline int64
	ok                     bool // judged (history enough, floors applied separately)
	floors                 bool // value passes the floors
}

func (p point) fires() bool { return p.ok && p.floors && p.value > p.level }

func (p point) clears(r *rules.Rule) bool {
	if !p.ok || !p.floors {
		return true
	}
	lim, _ := rules.MulDiv(p.level, r.ResolvePercent, 100)
	return p.value <= lim
}

func (rs *ruleState) evaluate(now time.Time, lateness time.Duration, out []Result) []Result {
	r := rs.r
	stepMin := int64(r.Step() / time.Minute)
	nowMin := window.MinuteOf(now.Unix())
	completeMin := window.MinuteOf(now.Add(-lateness).Unix()) - 1 // last complete minute
	lastStep := floorDivInt(completeMin+1, stepMin) - 1           // last complete step
	curStep := floorDivInt(nowMin, stepMin)
	if r.Kind == rules.Creep {
		curStep = lastStep // creep judges whole days only
	}
	k := r.ForSteps()
	first := len(out)
	for key, g := range rs.groups {
		last := rs.point(g, lastStep)
		// The provisional steps are those after the last complete one: the step still
		// filling and, for the first `lateness` of a step, the one that just ended and
		// still takes late events. Each is judged on its own window, the newest firing one
		// counting, so that a window means the same minutes at every second of the step:
		// a spike in the minute that just ended is not forgotten for those seconds.
		var cur point
		curAt := curStep
		useCur := false
		for s := curStep; s > lastStep; s-- {
			if p := rs.point(g, s); p.fires() {
				cur, curAt, useCur = p, s, true
				break
			}
		}
		held := k > 0
		for i := int64(0); i < k && held; i++ {
			p := last
			if i > 0 {
				p = rs.point(g, lastStep-i)
			}
			held = p.fires()
		}
		res := Result{Rule: r, Labels: g.labels}
		switch {
		case held || (k == 0 && (last.fires() || useCur)):
			res.Verdict = Hold
		case useCur || last.fires():
			res.Verdict = Pending
		case !last.clears(r):
			res.Verdict = Elevated
		default:
			continue
		}
		show, step := last, lastStep
		res.At = time.Unix(((step+1)*stepMin)*60, 0).UTC()
		if useCur {
			show, step = cur, curAt
			res.At = time.Unix(((step+1)*stepMin)*60, 0).UTC()
			if res.At.After(now) {
				res.At = now.UTC()
			}
		}
		res.Value, res.Level, res.Baseline = show.value, show.level, show.baseline
		if g.s.Contributors != nil {
			from, to := step*stepMin-int64(r.Window/time.Minute)+1, step*stepMin
			res.Contributors = top(g.s, r, show.baseline, from, to)
			if g.profile != nil {
				base := show.baseline
				if r.Kind == rules.Threshold {
					base = -1 // the window before
				}
				res.Causes = Explain(g.profile, base, from, to)
			}
		}
		res.key = key
		out = append(out, res)
	}
	// Groups live in a map; order this rule's results by group so evaluations repeat.
	mine := out[first:]
	sort.Slice(mine, func(i, j int) bool { return mine[i].key < mine[j].key })
	return out
}

// point computes the rule's value and level for the step ending with step index s (minutes
// for Threshold and Change, hours for Anomaly, days for Creep).
func (rs *ruleState) point(g *group, s int64) point {
	r := rs.r
	w := int64(r.Window / time.Minute)
	var p point
	switch r.Kind {
	case rules.Threshold:
		from := s - w + 1
		if r.CalendarDay {
			from = floorDivInt(s, 1440) * 1440
		}
		p.value = g.s.Minutes.Sum(from, s)
		p.ok = true
		if r.ShareOf != "" {
			total := rs.total(r.ShareOf).Minutes.Sum(from, s)
			p.level, _ = rules.MulDiv(total, r.AboveShareMilli, 100_000)
		} else {
			p.level = r.Above
		}
		p.baseline = p.level
		p.floors = rs.floors(p.value, from, s)
	case rules.Change:
		p.value = g.s.Minutes.Sum(s-w+1, s)
		periodH := int64(r.Period / time.Hour)
		h := floorDivInt(s, 60)
		samples := rs.scratch[0][:0]
		for i := int64(1); i <= int64(r.Periods); i++ {
			he := h - i*periodH
			if w >= 60 {
				hs := he - w/60 + 1
				if hs*60 < g.s.First {
					continue
				}
				samples = append(samples, g.s.Hours.Sum(hs, he))
			} else {
				if he*60 < g.s.First {
					continue
				}
				v, _ := rules.MulDiv(g.s.Hours.Get(he), w, 60)
				samples = append(samples, v)
			}
		}
		rs.scratch[0] = samples
		if len(samples) >= r.MinPeriods {
			p.ok = true
			p.baseline, p.level = rs.robustLevel(samples)
		}
		p.floors = rs.floors(p.value, s-w+1, s)
	case rules.Anomaly:
		p.value = g.s.Hours.Get(s)
		weekend := isWeekend(s)
		samples := rs.scratch[0][:0]
		for d := int64(1); d <= int64(r.Days); d++ {
			hh := s - 24*d
			if hh*60 < g.s.First || isWeekend(hh) != weekend {
				continue
			}
			samples = append(samples, g.s.Hours.Get(hh))
		}
		rs.scratch[0] = samples
		if len(samples) >= r.MinHistory {
			p.ok = true
			p.baseline, p.level = rs.robustLevel(samples)
		}
		p.floors = p.value >= r.MinValue
	case rules.Creep:
		cur := g.s.Hours.Sum((s-6)*24, s*24+23)
		prev := g.s.Hours.Sum((s-13)*24, (s-7)*24+23)
		p.value, p.baseline = cur, prev
		if (s-13)*1440 >= g.s.First {
			p.ok = true
			p.level, _ = rules.MulDiv(prev, 100_000+r.GrowthMilli, 100_000)
		}
		p.floors = p.value >= r.MinValue
	}
	return p
}

// floors applies the absolute and share floors to a window [from, to] of minutes.
func (rs *ruleState) floors(v, from, to int64) bool {
	r := rs.r
	if v < r.MinValue {
		return false
	}
	if r.MinShareMilli > 0 {
		total := rs.total(r.Measure).Minutes.Sum(from, to)
		need, _ := rules.MulDiv(total, r.MinShareMilli, 100_000)
		return v >= need
	}
	return true
}

// robustLevel returns the median of samples and the level to exceed:
// max(median × factor, median + score × 1.4826 × MAD), factor and score in thousandths.
// 1.4826 × MAD estimates the standard deviation of normally distributed data without being
// dragged by the outliers the baseline may hold (a past incident).
func (rs *ruleState) robustLevel(samples []int64) (median, level int64) {
	median = medianOf(samples)
	dev := rs.scratch[1][:0]
	for _, v := range samples {
		d := v - median
		if d < 0 {
			d = -d
		}
		dev = append(dev, d)
	}
	rs.scratch[1] = dev
	mad := medianOf(dev)
	byFactor, _ := rules.MulDiv(median, rs.r.FactorMilli, 1000)
	spread, _ := rules.MulDiv(mad, rs.r.ScoreMilli*14826, 10_000_000)
	byScore := median + spread
	if byScore < median { // overflow
		byScore = 1<<63 - 1
	}
	return median, max(byFactor, byScore)
}

// medianOf sorts v in place; for an even count it is the lower middle plus half the gap,
// rounded down, so it stays an integer.
func medianOf(v []int64) int64 {
	s := v
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2
}

func isWeekend(hour int64) bool {
	wd := time.Unix(hour*3600, 0).UTC().Weekday()
	return wd == time.Saturday || wd == time.Sunday
}

func floorDivInt(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// top returns, for each tracked dimension, the three values that contributed most to the
// window [from, to] over the baseline.
//
// The increase is the window's sum minus the baseline. It is split among a dimension's values
// by the mix of the window just before (the same length, ending at from-1): a value's expected
// amount is the baseline × its share of that window, and its increase is its amount minus
// that. The increases of a dimension's values thus sum to the group's increase (up to the
// rounding of each expected amount toward zero). A change rule's baseline is its median; a
// threshold has none, so the window before itself is the baseline. When the window before is
// empty there is no mix to go by, and each value's increase is its share of the window's
// amount times the increase. Values rank by increase, or by amount when there is no increase.
func top(s *window.Series, r *rules.Rule, baseline, from, to int64) []Contributor {
	w := to - from + 1
	type sums struct {
		now, before int64
		ring        *window.Ring
	}
	byDim := map[string]map[string]sums{}
	for d, c := range s.Contributors {
		for val, ring := range c.Values {
			now, before := ring.Sum(from, to), ring.Sum(from-w, from-1)
			if now == 0 && before == 0 {
				continue
			}
			if byDim[d] == nil {
				byDim[d] = map[string]sums{}
			}
			byDim[d][val] = sums{now, before, ring}
		}
	}
	var all []Contributor
	for d, vals := range byDim {
		var total, totalBefore int64
		for _, v := range vals {
			total += v.now
			totalBefore += v.before
		}
		base := baseline
		if r.Kind == rules.Threshold {
			base = totalBefore
		}
		increase := total - base
		for val, v := range vals {
			if v.now == 0 {
				continue
			}
			c := Contributor{Dimension: d, Value: val, Amount: v.now}
			if (d == "model" || d == "prompt_version") && val != "" && v.ring.Sum(from-int64(v.ring.Len()), from-1) == 0 {
				c.New = true
				for m := from; m <= to; m++ {
					if v.ring.Get(m) != 0 {
						c.FirstSeen = time.Unix(m*60, 0).UTC()
						break
					}
				}
			}
			if totalBefore > 0 {
				expected, _ := rules.MulDiv(base, v.before, totalBefore)
				c.Increase = v.now - expected
			} else {
				c.Increase, _ = rules.MulDiv(increase, v.now, total)
			}
			if increase > 0 {
				c.ShareMilli = mulDivSigned(c.Increase, 100_000, increase)
				c.OfIncrease = true
			} else {
				c.ShareMilli, _ = rules.MulDiv(v.now, 100_000, total)
			}
			all = append(all, c)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.Dimension != b.Dimension {
			return a.Dimension < b.Dimension
		}
		if a.OfIncrease && a.Increase != b.Increase {
			return a.Increase > b.Increase
		}
		if a.Amount != b.Amount {
			return a.Amount > b.Amount
		}
		return a.Value < b.Value
	})
	var out []Contributor
	n := map[string]int{}
	for _, c := range all {
		if n[c.Dimension] < 3 {
			out = append(out, c)
			n[c.Dimension]++
		}
	}
	return out
}

// mulDivSigned is rules.MulDiv for a negative a too (b ≥ 0, c > 0), rounding toward zero.
func mulDivSigned(a, b, c int64) int64 {
	if a >= 0 {
		q, _ := rules.MulDiv(a, b, c)
		return q
	}
	q, _ := rules.MulDiv(-a, b, c)
	return -q
}
