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
	now := time.Date(2026, 11, 26, 10, 30, 0, 0, time.UTC)
	s := New(3*time.Hour, func() time.Time { return now })
	if got, want := s.Floor(), time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("Floor() = %v, want %v", got, want)
	}
	add := func(id string, at time.Time, want bool) {
		t.Helper()
		if got := s.Add(KeyOf(id), uint64(len(id)), at); got != want {
			t.Fatalf("Add(%s, %v) = %v, want %v", id, at, got, want)
		}
	}
	add("old", now.Add(-4*time.Hour), false) // before the floor
	add("h7", time.Date(2026, 11, 26, 7, 5, 0, 0, time.UTC), true)
	add("h9", time.Date(2026, 11, 26, 9, 59, 0, 0, time.UTC), true)
	add("h9", time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), false) // already present
	add("h10", now, true)
	if s.Len() != 3 || !s.Has(KeyOf("h7")) || s.Has(KeyOf("old")) {
		t.Fatalf("after adds: Len() = %d, Has(h7) = %v, Has(old) = %v; want 3, true, false", s.Len(), s.Has(KeyOf("h7")), s.Has(KeyOf("old")))
	}
	if fp, ok := s.Lookup(KeyOf("h9")); !ok || fp != 2 {
		t.Fatalf("Lookup(h9) = %d, %v; want the first fingerprint 2, true", fp, ok)
	}
	if fp, ok := s.Lookup(KeyOf("old")); ok || fp != 0 {
		t.Fatalf("Lookup(old) = %d, %v; want 0, false", fp, ok)
	}
	if n := s.Expire(); n != 0 {
		t.Fatalf("Expire() within the same hour removed %d keys, want 0", n)
	}

	now = now.Add(2 * time.Hour) // 12:30: the window starts at 09:00, so hours 7 and 8 go.
	if n := s.Expire(); n != 1 {
		t.Fatalf("Expire() at 12:30 removed %d keys, want 1", n)
	}
	for id, want := range map[string]bool{"h7": false, "h9": true, "h10": true} {
		if got := s.Has(KeyOf(id)); got != want {
			t.Errorf("Has(%s) at 12:30 = %v, want %v", id, got, want)
		}
	}
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
			s.Add(k, 1, now)
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
