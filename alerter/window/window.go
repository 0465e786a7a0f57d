// Package window keeps a group's recent usage in memory as consecutive buckets — minutes for
// the windows rules sum, hours for the baselines they compare against — fed from
// USAGE_ENRICHED rows and from ClickHouse history. Amounts are exact integers: picodollars for
// money, counts for everything else.
package window

import (
	"math"
	"strings"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// Ring holds the values of the n consecutive buckets ending at the newest one written.
// Indexes are absolute (minutes or hours since the Unix epoch), so a value lands in its own
// bucket whatever order rows arrive in, as long as it is not older than the ring.
type Ring struct {
	head int64 // newest absolute index; valid once started
	v    []int64
	// started is false until the first Add: head means nothing before.
	started bool
}

// NewRing returns a ring of n buckets (n ≥ 1).
func NewRing(n int) *Ring { return &Ring{v: make([]int64, max(n, 1))} }

// Len is the number of buckets the ring keeps.
func (r *Ring) Len() int { return len(r.v) }

// Add adds v to bucket i. It reports false, changing nothing, when i is older than the ring
// keeps. A newer index moves the ring forward, clearing the buckets it passes.
func (r *Ring) Add(i, v int64) bool {
	n := int64(len(r.v))
	if !r.started {
		r.started, r.head = true, i
		r.v[mod(i, n)] = v
		return true
	}
	if i > r.head {
		if i-r.head >= n {
			clear(r.v)
		} else {
			for j := r.head + 1; j <= i; j++ {
				r.v[mod(j, n)] = 0
			}
		}
		r.head = i
	}
	if i <= r.head-n {
		return false
	}
	r.v[mod(i, n)] += v
	return true
}

// Newest is the newest bucket written; ok is false before the first Add.
func (r *Ring) Newest() (i int64, ok bool) { return r.head, r.started }

// Get is the value of bucket i, 0 when the ring does not hold it.
func (r *Ring) Get(i int64) int64 {
	if !r.started || i > r.head || i <= r.head-int64(len(r.v)) {
		return 0
	}
	return r.v[mod(i, int64(len(r.v)))]
}

// Sum is the sum of buckets from..to, inclusive.
func (r *Ring) Sum(from, to int64) int64 {
	if !r.started {
		return 0
	}
	from = max(from, r.head-int64(len(r.v))+1)
	to = min(to, r.head)
	var s int64
	for i := from; i <= to; i++ {
		s += r.v[mod(i, int64(len(r.v)))]
	}
	return s
}

func mod(i, n int64) int64 {
	m := i % n
	if m < 0 {
		m += n
	}
	return m
}

// maxContributors bounds the contributors tracked per dimension of a series; the rest are
// summed under "(other)". A contributor none of whose buckets is left makes room for a new one.
const maxContributors = 16

// Series is one group's buckets.
type Series struct {
	Minutes *Ring // nil when the rule needs none
	Hours   *Ring // nil when the rule needs none
	// First is the first minute the series has data for (from the stream or from history);
	// baselines only use periods after it.
	First   int64
	hasData bool
	// Contributors per dimension ("model") and value ("gpt-4o"), per minute, for "top
	// contributors" in notifications; nil when not tracked. Each keeps contributorMinutes
	// buckets.
	Contributors       map[string]*Contributors
	contributorMinutes int
}

// Contributors are the buckets of one dimension's values: at most maxContributors of them,
// "(other)" included.
type Contributors struct {
	Values map[string]*Ring
	// staleFrom: before this minute no value's buckets have all expired (a lower bound:
	// buckets only grow newer). Without it every new value of a dimension that changes with
	// each event (a workflow id) once scanned them all.
	staleFrom int64
}

// OtherContributors is the value the dimension's values past maxContributors count under.
const OtherContributors = "(other)"

// NewSeries returns a series keeping the given numbers of minute and hour buckets; 0 means
// none. When contributorMinutes is above 0 it also tracks contributors (AddContributor) over
// that many minute buckets.
func NewSeries(minutes, hours, contributorMinutes int) *Series {
	s := &Series{}
	if minutes > 0 {
		s.Minutes = NewRing(minutes)
	}
	if hours > 0 {
		s.Hours = NewRing(hours)
	}
	if contributorMinutes > 0 {
		s.Contributors, s.contributorMinutes = map[string]*Contributors{}, contributorMinutes
	}
	return s
}

// AddMinute adds v at minute m to the minute and hour buckets. It reports false when m is
// older than every bucket kept.
func (s *Series) AddMinute(m, v int64) bool {
	s.seen(m)
	ok := false
	if s.Minutes != nil {
		ok = s.Minutes.Add(m, v)
	}
	if s.Hours != nil {
		ok = s.Hours.Add(floorDiv(m, 60), v) || ok
	}
	return ok
}

// AddHour adds v at hour h to the hour buckets only (history older than the minute buckets).
func (s *Series) AddHour(h, v int64) {
	s.seen(h * 60)
	if s.Hours != nil {
		s.Hours.Add(h, v)
	}
}

// Known marks minute m as within the series' history even without data (a group that
// existed but spent nothing).
func (s *Series) seen(m int64) {
	if !s.hasData || m < s.First {
		s.First, s.hasData = m, true
	}
}

// AddContributor adds v at minute m to the contributor value of dimension ("model",
// "gpt-4o"). A dimension tracks at most maxContributors values; past that, a value whose
// buckets have all expired is dropped to make room, and failing that v counts under
// OtherContributors.
func (s *Series) AddContributor(dimension, value string, m, v int64) {
	if s.Contributors == nil {
		return
	}
	d := s.Contributors[dimension]
	if d == nil {
		d = &Contributors{Values: map[string]*Ring{}, staleFrom: math.MaxInt64}
		s.Contributors[dimension] = d
	}
	r, ok := d.Values[value]
	if !ok {
		r = s.newContributor(d, value, m)
	}
	r.Add(m, v)
}

// newContributor returns the ring value, one of d not tracked yet, counts into: its own, one
// made by dropping a value whose buckets all expired, or OtherContributors'.
func (s *Series) newContributor(d *Contributors, value string, m int64) *Ring {
	if len(d.Values) >= maxContributors {
		stale, found := "", false
		if m >= d.staleFrom {
			d.staleFrom = math.MaxInt64
			for k, kr := range d.Values {
				newest, _ := kr.Newest()
				if at := newest + int64(kr.Len()); at <= m && !found {
					stale, found = k, true
				} else {
					d.staleFrom = min(d.staleFrom, at)
				}
			}
		}
		if found {
			delete(d.Values, stale)
		} else {
			if r := d.Values[OtherContributors]; r != nil {
				return r
			}
			value = OtherContributors
		}
	}
	r := NewRing(s.contributorMinutes)
	// A decoded row's strings share one buffer per column of its message; a copy keeps a
	// long-lived series from holding that whole buffer.
	d.Values[strings.Clone(value)] = r
	d.staleFrom = min(d.staleFrom, m+int64(r.Len()))
	return r
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// MinuteOf is the minute index of a Unix time in seconds.
func MinuteOf(unix int64) int64 { return floorDiv(unix, 60) }

// Value is the row's contribution to a measure.
func Value(r *batch.Row, m rules.Measure) int64 {
	switch m {
	case rules.Cost:
		return r.CostPico
	case rules.UntaggedCost:
		if !attributed(r) {
			return r.CostPico
		}
		return 0
	case rules.TierFallbackEvents:
		if r.TierFallback() {
			return 1
		}
		return 0
	case rules.Requests:
		return 1
	case rules.UnpricedEvents:
		if !r.Priced {
			return 1
		}
		return 0
	case rules.InputTokens:
		return r.Tokens.Input
	case rules.OutputTokens:
		return r.Tokens.Output
	case rules.CachedInputTokens:
		return r.Tokens.CachedInput
	case rules.CacheWriteTokens:
		return r.Tokens.CacheWrite
	case rules.ReasoningTokens:
		return r.Tokens.Reasoning
	}
	return 0
}

// unallocated is the team the tag policy and the attribution rules' recommended defaults give
// spend nobody claimed.
const unallocated = "unallocated"

// attributed is the tag_coverage view's test of a fully attributed event: team set and not
// unallocated, feature, env and cost_center set. alerting.measureSQL says the same in SQL.
func attributed(r *batch.Row) bool {
	return r.Team != "" && r.Team != unallocated && r.Feature != "" && r.Env != "" && r.CostCenter != ""
}

// Dimension is the row's value of a grouping dimension (one of rules.Dimensions).
func Dimension(r *batch.Row, d string) string {
	switch d {
	case "team":
		return r.Team
	case "feature":
		return r.Feature
	case "env":
		return r.Env
	case "cost_center":
		return r.CostCenter
	case "traffic":
		return r.Traffic
	case "provider":
		return r.Provider
	case "model":
		return r.Model
	case "model_priced":
		return r.ModelPriced
	}
	return ""
}
