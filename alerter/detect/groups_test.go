package detect

import (
	"strconv"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// TestGroupsAreCappedPerRule performs the attack: a client that sends a new team on every
// request. The built-in team_spike rule keeps at most DefaultMaxGroups teams; the rows of
// teams past the cap are refused (counted), and the groups already held still count theirs.
func TestGroupsAreCappedPerRule(t *testing.T) {
	var spike rules.Rule
	for _, r := range rules.Builtins() {
		if r.Name == rules.BuiltinTeamSpike {
			spike = r
		}
	}
	e := New([]rules.Rule{spike}, nil)
	const teams = DefaultMaxGroups + 2_500
	for i := range teams {
		e.Add(row(monday.Add(time.Duration(i)*time.Millisecond), "t"+strconv.Itoa(i), usd))
	}
	e.Add(row(monday.Add(time.Minute), "t0", usd)) // a held group keeps counting
	if got := e.Groups(); got != DefaultMaxGroups {
		t.Errorf("groups = %d, want %d", got, DefaultMaxGroups)
	}
	if e.Refused != 2_500 {
		t.Errorf("refused = %d, want 2500", e.Refused)
	}
	if got := e.rules[0].groups["t0\x00"].s.Minutes.Sum(0, 1<<40); got != 2*usd {
		t.Errorf("t0 holds %d, want %d", got, 2*usd)
	}
	// The cap and the count survive a reload.
	e2 := New([]rules.Rule{spike}, e)
	if e2.MaxGroups != DefaultMaxGroups || e2.Refused != 2_500 || e2.Groups() != DefaultMaxGroups {
		t.Errorf("after reload: max %d, refused %d, groups %d", e2.MaxGroups, e2.Refused, e2.Groups())
	}
}

// TestIdleGroupsAreEvicted: a group whose newest data is older than every bucket of its rule
// is dropped at the next evaluation, which frees its room under the cap; a group with data
// inside the buckets stays.
func TestIdleGroupsAreEvicted(t *testing.T) {
	r := rules.Rule{Name: "hourly", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"},
		Window: time.Hour, Above: 100 * usd, ResolvePercent: 100, Severity: "warning"}
	e := New([]rules.Rule{r}, nil)
	e.MaxGroups = 2
	span := time.Duration(e.rules[0].minutes) * time.Minute // 62 minutes
	e.Add(row(monday, "old", usd))
	e.Add(row(monday.Add(span), "fresh", usd))
	e.Add(row(monday.Add(span), "third", usd))
	if e.Groups() != 2 || e.Refused != 1 {
		t.Fatalf("groups %d, refused %d; want 2 and 1", e.Groups(), e.Refused)
	}
	e.Evaluate(monday.Add(span)) // "old" is 62 minutes old: still in the ring
	if e.Groups() != 2 || e.Evicted != 0 {
		t.Fatalf("at the span: groups %d, evicted %d; want 2 and 0", e.Groups(), e.Evicted)
	}
	e.Evaluate(monday.Add(span + time.Minute))
	if e.Groups() != 1 || e.Evicted != 1 || e.rules[0].groups["fresh\x00"] == nil {
		t.Fatalf("after the span: groups %d, evicted %d; want fresh alone", e.Groups(), e.Evicted)
	}
	e.Add(row(monday.Add(span+time.Minute), "third", usd))
	if e.Groups() != 2 || e.Refused != 1 {
		t.Errorf("the freed room is not reused: groups %d, refused %d", e.Groups(), e.Refused)
	}
}

// TestHistoryRespectsTheCap: groups loaded from ClickHouse at start-up count against the cap
// too, and an hour bucket of history counts as data up to the end of its hour.
func TestHistoryRespectsTheCap(t *testing.T) {
	r := rules.Rule{Name: "hourly", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"},
		Window: time.Hour, Above: 100 * usd, ResolvePercent: 100, Severity: "warning"}
	e := New([]rules.Rule{r}, nil)
	e.MaxGroups = 1
	e.AddHistory("hourly", History{Labels: map[string]string{"team": "a"}, At: monday, Value: usd, Measure: rules.Cost})
	e.AddHistory("hourly", History{Labels: map[string]string{"team": "b"}, At: monday, Value: usd, Measure: rules.Cost})
	if e.Groups() != 1 || e.Refused != 1 {
		t.Errorf("groups %d, refused %d; want 1 and 1", e.Groups(), e.Refused)
	}
}
