package dedup

import (
	"fmt"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

func TestKeyOf(t *testing.T) {
	a, b := KeyOf("evt_1"), KeyOf("evt_2")
	if a == b {
		t.Fatalf("KeyOf(evt_1) == KeyOf(evt_2) == %v", a)
	}
	if a[0] == a[1] {
		t.Fatalf("KeyOf(evt_1) has two equal halves %v; the second hash must differ", a)
	}
	if got := KeyOf("evt_1"); got != a {
		t.Fatalf("KeyOf is not deterministic: %v then %v", a, got)
	}
}

func TestSetWindow(t *testing.T) {
	// A window of 72 h has buckets of an hour.
	now := time.Date(2026, 11, 26, 10, 30, 0, 0, time.UTC)
	s := New(72*time.Hour, func() time.Time { return now })
	if got, want := s.Floor(), time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("Floor() = %v, want %v", got, want)
	}
	add := func(id string, at time.Time, want bool) {
		t.Helper()
		if got := s.Add(KeyOf(id), uint64(len(id)), at, at); got != want {
			t.Fatalf("Add(%s, %v) = %v, want %v", id, at, got, want)
		}
	}
	add("old", now.Add(-73*time.Hour), false) // before the floor
	add("h10", time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC), true)
	add("h12", time.Date(2026, 11, 23, 12, 59, 0, 0, time.UTC), true)
	add("h12", time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC), false) // already present
	add("now", now, true)
	if s.Len() != 3 || !s.Has(KeyOf("h10")) || s.Has(KeyOf("old")) {
		t.Fatalf("after adds: Len() = %d, Has(h10) = %v, Has(old) = %v; want 3, true, false", s.Len(), s.Has(KeyOf("h10")), s.Has(KeyOf("old")))
	}
	if fp, ok := s.Lookup(KeyOf("h12")); !ok || fp != 3 {
		t.Fatalf("Lookup(h12) = %d, %v; want the first fingerprint 3, true", fp, ok)
	}
	if fp, ok := s.Lookup(KeyOf("old")); ok || fp != 0 {
		t.Fatalf("Lookup(old) = %d, %v; want 0, false", fp, ok)
	}
	if n := s.Expire(); n != 0 {
		t.Fatalf("Expire() within the same hour removed %d keys, want 0", n)
	}

	now = now.Add(2 * time.Hour) // 12:30: the window starts at 12:00 three days back, so hours 10 and 11 go.
	if n := s.Expire(); n != 1 {
		t.Fatalf("Expire() at 12:30 removed %d keys, want 1", n)
	}
	if got, want := s.Floor(), time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Floor() at 12:30 = %v, want %v", got, want)
	}
	for id, want := range map[string]bool{"h10": false, "h12": true, "now": true} {
		if got := s.Has(KeyOf(id)); got != want {
			t.Errorf("Has(%s) at 12:30 = %v, want %v", id, got, want)
		}
	}
}

// A short window has short buckets: 10 minutes, in buckets of 8 s (600 s / 72, rounded down),
// so the set holds little more than the window.
func TestSetShortWindow(t *testing.T) {
	now := time.Unix(1_800_000_004, 0).UTC() // a multiple of 8 s, plus 4 s
	s := New(10*time.Minute, func() time.Time { return now })
	if got, want := s.Floor(), time.Unix(1_800_000_000-600, 0).UTC(); !got.Equal(want) {
		t.Fatalf("Floor() = %v, want %v", got, want)
	}
	s.Add(KeyOf("a"), 1, now.Add(-9*time.Minute), now.Add(-9*time.Minute))
	s.Add(KeyOf("b"), 1, now, now)
	now = now.Add(68 * time.Second) // the floor moves past "a"'s bucket only
	if n := s.Expire(); n != 1 || s.Has(KeyOf("a")) || !s.Has(KeyOf("b")) {
		t.Errorf("Expire() 68 s later removed %d, Has(a) %v, Has(b) %v; want 1, false, true", n, s.Has(KeyOf("a")), s.Has(KeyOf("b")))
	}
}

// The set vouches for an hour of event time until an event timed in it leaves the set, is
// written without entering it, or is uncovered by its owner.
func TestSetVouches(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 30, 0, 0, time.UTC)
	s := New(time.Hour, func() time.Time { return now })
	hour := func(h int) time.Time { return time.Date(2026, 11, 26, h, 15, 0, 0, time.UTC) }
	check := func(when string, want map[int]bool) {
		t.Helper()
		for h, w := range want {
			if got := s.Vouches(hour(h)); got != w {
				t.Errorf("%s: Vouches(%02d:15) = %v, want %v", when, h, got, w)
			}
		}
	}
	check("empty", map[int]bool{2: true, 5: true, 9: true, 10: true})

	s.Add(KeyOf("backfill"), 1, now, hour(2))                      // history sent now: kept from now
	s.Add(KeyOf("fresh"), 1, now, now)                             // timed now
	s.Add(KeyOf("redelivered"), 1, now.Add(-2*time.Hour), hour(5)) // kept from before the floor: not kept
	s.Uncover(hour(7))                                             // ClickHouse held an old event timed 07:xx
	check("after the adds", map[int]bool{2: true, 5: false, 7: false, 9: true, 10: true})

	now = now.Add(2 * time.Hour) // every bucket leaves the window
	if n := s.Expire(); n != 2 {
		t.Fatalf("Expire() removed %d keys, want 2", n)
	}
	check("after expiry", map[int]bool{2: false, 5: false, 7: false, 9: true, 10: false})
}

func BenchmarkSet(b *testing.B) {
	now := time.Now()
	s := New(72*time.Hour, func() time.Time { return now })
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprintf("evt_%020d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := KeyOf(ids[i&(len(ids)-1)])
		if !s.Has(k) {
			s.Add(k, 1, now, now)
		}
	}
}

func TestResponseKeyOf(t *testing.T) {
	a := ResponseKeyOf("openai", "chatcmpl-1")
	for _, tc := range []struct {
		provider, rid string
		same          bool
	}{
		{"openai", "chatcmpl-1", true},
		{"OpenAI", "chatcmpl-1", true}, // the provider's case does not matter
		{"openai", "chatcmpl-2", false},
		{"azure", "chatcmpl-1", false},
		{"openai", "Chatcmpl-1", false}, // the response id's does
		{"openai\x00chatcmpl-1", "", false},
	} {
		if got := ResponseKeyOf(tc.provider, tc.rid) == a; got != tc.same {
			t.Errorf("ResponseKeyOf(%q, %q) == ResponseKeyOf(openai, chatcmpl-1): %v, want %v", tc.provider, tc.rid, got, tc.same)
		}
	}
	if a == KeyOf("chatcmpl-1") || a == KeyOf("openai") {
		t.Errorf("a response key equals an event id's key")
	}
	for _, tc := range [][2]string{{"openai", "chatcmpl-1"}, {"Anthropic", "msg_01"}, {"", "r"}, {"ÉCOLE", "x\x00y"}, {"openai", ""}} {
		if got, want := ResponseKeyOf(tc[0], tc[1]), KeyOf(stream.PartitionKey(tc[0], tc[1], "")); got != want {
			t.Errorf("ResponseKeyOf(%q, %q) = %v, want KeyOf of the partition key %v", tc[0], tc[1], got, want)
		}
	}
}

func TestResponseKeyOfDoesNotAllocate(t *testing.T) {
	if a := testing.AllocsPerRun(100, func() { ResponseKeyOf("openai", "chatcmpl-B9MBs8CjcvOU2jLn4n570S5q") }); a != 0 {
		t.Errorf("ResponseKeyOf allocates %v times per call, want 0", a)
	}
}

// BenchmarkKey compares the per-row cost of the id key with that of the response key, which
// the aggregator computes in addition for every row carrying a response id.
func BenchmarkKey(b *testing.B) {
	b.Run("id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			KeyOf("evt_00000000000000012345")
		}
	})
	b.Run("response", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ResponseKeyOf("openai", "chatcmpl-B9MBs8CjcvOU2jLn4n570S5q")
		}
	})
}
