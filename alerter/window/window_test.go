package window

import (
	"fmt"
	"strconv"
	"testing"
)

func TestRing(t *testing.T) {
	r := NewRing(3)
	r.Add(10, 1)
	r.Add(11, 2)
	r.Add(10, 4) // late, still held
	if got := r.Sum(9, 11); got != 7 {
		t.Errorf("Sum(9,11) = %d, want 7", got)
	}
	if !r.Add(13, 8) { // moves on by two: bucket 11 stays, 12 is empty, 10 drops out
		t.Fatal("Add(13) refused")
	}
	if got, want := [4]int64{r.Get(10), r.Get(11), r.Get(12), r.Get(13)}, [4]int64{0, 2, 0, 8}; got != want {
		t.Errorf("buckets 10-13 = %v, want %v", got, want)
	}
	if r.Add(10, 1) {
		t.Error("Add(10) accepted a bucket older than the ring")
	}
	r.Add(100, 5) // far ahead: everything else is gone
	if got := r.Sum(0, 200); got != 5 {
		t.Errorf("after a jump, Sum = %d, want 5", got)
	}
	neg := NewRing(2)
	neg.Add(-3, 1)
	neg.Add(-2, 2)
	if got := neg.Sum(-3, -2); got != 3 {
		t.Errorf("negative indexes: Sum = %d, want 3", got)
	}
}

func TestSeriesHoursAndContributors(t *testing.T) {
	s := NewSeries(5, 3, 5)
	s.AddMinute(119, 1) // hour 1
	s.AddMinute(120, 2) // hour 2
	s.AddHour(0, 7)     // history
	if s.First != 0 || s.Hours.Get(0) != 7 || s.Hours.Get(1) != 1 || s.Hours.Get(2) != 2 {
		t.Errorf("first %d hours %d %d %d", s.First, s.Hours.Get(0), s.Hours.Get(1), s.Hours.Get(2))
	}
	for i := 0; i < 20; i++ {
		s.AddContributor("model", string(rune('a'+i)), 120, 1)
	}
	if got := len(s.Contributors["model"].Values); got != maxContributors+1 || s.Contributors["model"].Values["(other)"].Get(120) != 4 {
		t.Errorf("contributors = %d, other = %d; want %d and 4", got, s.Contributors["model"].Values["(other)"].Get(120), maxContributors+1)
	}
}

func TestExpiredContributorsMakeRoom(t *testing.T) {
	s := NewSeries(5, 0, 5)
	for i := 0; i < maxContributors; i++ {
		s.AddContributor("workflow", string(rune('a'+i)), 100, 1)
	}
	s.AddContributor("workflow", "late", 104, 1) // every slot still holds minute 100
	if got := s.Contributors["workflow"].Values["(other)"].Get(104); got != 1 {
		t.Fatalf("(other) at minute 104 = %d, want 1", got)
	}
	// At minute 106 the buckets of minute 100 have expired (5 kept: 102..106); the new
	// workflow takes the place of an expired one instead of going to (other).
	s.AddContributor("workflow", "runaway", 106, 7)
	if r := s.Contributors["workflow"].Values["runaway"]; r == nil || r.Get(106) != 7 {
		t.Fatalf("workflow=runaway not tracked: %v", s.Contributors)
	}
	if got := len(s.Contributors["workflow"].Values); got != maxContributors+1 {
		t.Errorf("contributors = %d, want %d", got, maxContributors+1)
	}
}

// Each dimension counts its own values, and a value that found no room finds it once the
// buckets of one it waited for have expired — also when others got newer in between.
func TestContributorRoomPerDimension(t *testing.T) {
	s := NewSeries(5, 0, 5)
	for i := 0; i < maxContributors; i++ {
		s.AddContributor("workflow", fmt.Sprintf("w%d", i), 100, 1)
	}
	s.AddContributor("model", "gpt-4o", 100, 1) // another dimension: room of its own
	if r := s.Contributors["model"].Values["gpt-4o"]; r == nil || r.Get(100) != 1 {
		t.Fatalf("model=gpt-4o not tracked beside %d workflows", maxContributors)
	}
	s.AddContributor("workflow", "w0", 103, 1) // w0 stays fresh until minute 108
	s.AddContributor("workflow", "late", 104, 1)
	if got := s.Contributors["workflow"].Values["(other)"].Get(104); got != 1 {
		t.Fatalf("(other) at minute 104 = %d, want 1", got)
	}
	s.AddContributor("workflow", "next", 105, 1) // w1..w15 expired at 105
	if r := s.Contributors["workflow"].Values["next"]; r == nil || r.Get(105) != 1 {
		t.Fatalf("workflow=next not tracked at 105: %d contributors", len(s.Contributors["workflow"].Values))
	}
	if s.Contributors["workflow"].Values["w0"] == nil {
		t.Fatal("workflow=w0, fresh, was dropped")
	}
}

// BenchmarkAddContributor counts rows whose workflow id is new with every row, as an agent
// platform's are, into a series tracking four dimensions.
func BenchmarkAddContributor(b *testing.B) {
	s := NewSeries(60, 0, 120)
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		m := 1000 + i/1000
		s.AddContributor("model", "gpt-4o", m, 1)
		s.AddContributor("feature", "agents", m, 1)
		s.AddContributor("workflow", "wf-"+strconv.FormatInt(i, 10), m, 1)
		s.AddContributor("prompt_version", "v7", m, 1)
		i++
	}
}

// Counting a row allocates nothing, for a value tracked already and for one that counts under
// (other) — a dimension that changes with each event, as a workflow id, takes that path for
// almost every row.
func TestAddContributorAllocatesNothing(t *testing.T) {
	s := NewSeries(5, 0, 5)
	for i := range maxContributors + 1 {
		s.AddContributor("workflow", fmt.Sprintf("w%d", i), 100, 1)
	}
	values := make([]string, 100)
	for i := range values {
		values[i] = fmt.Sprintf("new-%d", i)
	}
	i := 0
	if n := testing.AllocsPerRun(100, func() {
		s.AddContributor("workflow", "w3", 101, 1)
		s.AddContributor("workflow", values[i%len(values)], 101, 1)
		i++
	}); n != 0 {
		t.Errorf("%v allocations per two rows counted, want 0", n)
	}
	if got := s.Contributors["workflow"].Values[OtherContributors].Get(101); got != 101 {
		t.Errorf("(other) at minute 101 = %d, want the 101 new values", got)
	}
}
