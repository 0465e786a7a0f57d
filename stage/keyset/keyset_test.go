package keyset

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// has reports whether Find finds the key of id.
func has(s *Set, id string) bool {
	_, _, ok := s.Find(KeyOf(id))
	return ok
}

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
		if got := s.Add(KeyOf(id), at, at); got != want {
			t.Fatalf("Add(%s, %v) = %v, want %v", id, at, got, want)
		}
	}
	add("old", now.Add(-73*time.Hour), false) // before the floor
	add("h10", time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC), true)
	add("h12", time.Date(2026, 11, 23, 12, 59, 0, 0, time.UTC), true)
	add("h12", time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), false) // already present in the bucket
	add("now", now, true)
	if s.Len() != 3 || !has(s, "h10") || has(s, "old") {
		t.Fatalf("after adds: Len() = %d, Find(h10) %v, Find(old) %v; want 3, true, false", s.Len(), has(s, "h10"), has(s, "old"))
	}
	// Find answers the hours the copy was timed in, where the caller confirms it.
	if from, to, ok := s.Find(KeyOf("h12")); !ok || !from.Equal(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)) || !to.Equal(time.Date(2026, 11, 23, 12, 59, 59, 0, time.UTC)) {
		t.Fatalf("Find(h12) = %v, %v, %v; want 12:00:00, 12:59:59, true", from, to, ok)
	}
	if n := s.Expire(); n != 0 {
		t.Fatalf("Expire() within the same hour removed %d keys, want 0", n)
	}

	now = now.Add(2 * time.Hour) // 12:30: the window starts at 12:00 three days back, so hours 10 and 11 go.
	add("later", now, true)      // the window ends at the newest event kept (see TestSetFollowsABacklog)
	if n := s.Expire(); n != 1 {
		t.Fatalf("Expire() at 12:30 removed %d keys, want 1", n)
	}
	if got, want := s.Floor(), time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Floor() at 12:30 = %v, want %v", got, want)
	}
	for id, want := range map[string]bool{"h10": false, "h12": true, "now": true, "later": true} {
		if got := has(s, id); got != want {
			t.Errorf("Find(%s) at 12:30 = %v, want %v", id, got, want)
		}
	}
}

// Past SetMaxKeys, Expire drops the oldest buckets before they leave the window, uncovering
// their hours (so the caller looks their events up in ClickHouse), but never one younger than
// keep.
func TestSetMaxKeys(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 30, 0, 0, time.UTC)
	s := New(72*time.Hour, func() time.Time { return now }) // hour-long buckets
	s.SetMaxKeys(25, 90*time.Minute)                        // keep: the buckets from the one of 09:00 on
	for h := range 6 {                                      // 10 keys in each of the hours 05:00 .. 10:00
		at := time.Date(2026, 11, 26, 5+h, 30, 0, 0, time.UTC)
		for i := range 10 {
			s.Add(KeyOf(fmt.Sprintf("%d-%d", h, i)), at, at)
		}
	}
	// 60 keys, 25 allowed: hours 5, 6, 7 and 8 go (hours 9 and 10 are within keep: 20 keys
	// stay although 5 more could).
	if n := s.Expire(); n != 40 || s.Len() != 20 {
		t.Fatalf("Expire() removed %d, Len() = %d; want 40 and 20", n, s.Len())
	}
	if got, want := s.Floor(), time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Floor() = %v, want %v (the oldest bucket kept)", got, want)
	}
	for h, want := range map[int]bool{5: false, 8: false, 9: true, 10: true} {
		at := time.Date(2026, 11, 26, h, 10, 0, 0, time.UTC)
		if s.Vouches(at) != want || has(s, fmt.Sprintf("%d-0", h-5)) != want {
			t.Errorf("hour %d: Vouches %v, Find %v; want both %v", h, s.Vouches(at), has(s, fmt.Sprintf("%d-0", h-5)), want)
		}
	}
	// An event kept from before the new floor is not recorded, only uncovered.
	if s.Add(KeyOf("late"), time.Date(2026, 11, 26, 8, 30, 0, 0, time.UTC), time.Date(2026, 11, 26, 8, 30, 0, 0, time.UTC)) {
		t.Error("Add before the floor recorded a key")
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
	s.Add(KeyOf("a"), now.Add(-9*time.Minute), now.Add(-9*time.Minute))
	s.Add(KeyOf("b"), now, now)
	now = now.Add(68 * time.Second) // the floor moves past "a"'s bucket only
	s.Add(KeyOf("c"), now, now)
	if n := s.Expire(); n != 1 || has(s, "a") || !has(s, "b") {
		t.Errorf("Expire() 68 s later removed %d, Find(a) %v, Find(b) %v; want 1, false, true", n, has(s, "a"), has(s, "b"))
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

	s.Add(KeyOf("backfill"), now, hour(2))                      // history sent now: kept from now
	s.Add(KeyOf("fresh"), now, now)                             // timed now
	s.Add(KeyOf("redelivered"), now.Add(-2*time.Hour), hour(5)) // kept from before the floor: not kept
	s.Uncover(hour(7))                                          // ClickHouse held an old event timed 07:xx
	check("after the adds", map[int]bool{2: true, 5: false, 7: false, 9: true, 10: true})

	now = now.Add(2 * time.Hour) // every bucket leaves the window
	s.Add(KeyOf("next"), now, now)
	if n := s.Expire(); n != 2 {
		t.Fatalf("Expire() removed %d keys, want 2", n)
	}
	check("after expiry", map[int]bool{2: false, 5: false, 7: false, 9: true, 10: false})
}

// A writer working through a backlog keeps events from long ago: the window ends at the newest
// event kept, not at now, so the backlog's events enter the set and the filter vouches for
// their times without a lookup in ClickHouse — even with the window shortened by SetMaxKeys to
// far less than the backlog. Before, every event of a backlog older than the window was looked
// up, and at 30,000 events/s with a bounded set the writer fell to 3,300 events/s (the soak of
// session 8).
func TestSetFollowsABacklog(t *testing.T) {
	now := time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)
	s := New(time.Hour, func() time.Time { return now })
	s.SetMaxKeys(500, time.Minute) // 100 events a second: about 5 s of them
	// The backlog: events received and timed from 12:00 on, 100 a second, written 10 s at a time.
	at := now.Add(-time.Hour)
	for batch := range 60 {
		for i := range 1000 {
			t0 := at.Add(time.Duration(batch*1000+i) * 10 * time.Millisecond)
			if t0.Before(s.Floor()) || !s.Add(KeyOf(fmt.Sprintf("e%d-%d", batch, i)), t0, t0) {
				t.Fatalf("batch %d: event kept from %v is behind the floor %v", batch, t0.Format(time.TimeOnly), s.Floor().Format(time.TimeOnly))
			}
		}
		s.Expire()
		now = now.Add(time.Second) // the writer is a minute behind, and falls further behind
	}
	// Trimmed to the bound, but never within the minute's keep (and its 50 s bucket) of the
	// newest event, 12:09:59.99.
	if n := s.Len(); n > 11_000 {
		t.Errorf("Len() = %d, want at most the 110 s before the newest event (11,000 keys)", n)
	}
	if floor := s.Floor(); floor.Before(time.Date(2026, 12, 6, 12, 8, 9, 0, time.UTC)) || floor.After(time.Date(2026, 12, 6, 12, 9, 0, 0, time.UTC)) {
		t.Errorf("Floor() = %v, want the bucket of 12:08:59 (the newest event less the keep)", floor.Format(time.TimeOnly))
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
		if _, _, ok := s.Find(k); !ok {
			s.Add(k, now, now)
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
	long := strings.Repeat("r", 200) // past ResponseKeyOf's stack buffer
	for _, tc := range [][2]string{{"openai", "chatcmpl-1"}, {"Anthropic", "msg_01"}, {"", "r"}, {"ÉCOLE", "x\x00y"}, {"openai", ""}, {"openai", long}, {"OpenAI", long[:128-len("response\x00openai\x00")-len(keySuffix)]}, {"OpenAI", long[:129-len("response\x00openai\x00")-len(keySuffix)]}} {
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

// BenchmarkSetBytesPerID measures the resident memory of the de-duplication state per event
// inside the window: an id and a provider response id each, in the two sets a partition's
// writer keeps, 2^20 events over a window of an hour.
func BenchmarkSetBytesPerID(b *testing.B) {
	const n = 1 << 20
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ids := make([]Key, n)
	resps := make([]Key, n)
	for i := range ids {
		ids[i] = KeyOf(fmt.Sprintf("evt_%020d", i))
		resps[i] = ResponseKeyOf("openai", fmt.Sprintf("chatcmpl-%024d", i))
	}
	var perID float64
	for b.Loop() {
		now := start
		clock := func() time.Time { return now }
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		set, resp := New(time.Hour, clock), New(time.Hour, clock)
		for i := range ids {
			// Evenly over the window's hour.
			now = start.Add(time.Duration(i) * time.Hour / n)
			set.Add(ids[i], now, now)
			resp.Add(resps[i], now, now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perID = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(set)
		runtime.KeepAlive(resp)
	}
	b.ReportMetric(perID, "B/id")
}

// The table grows past its first size and is rebuilt as buckets expire; every key added is
// found until its bucket leaves the window, and keys never added are not (40-bit tags: a
// collision among these is about 2e-5 likely, and the keys are fixed).
func TestSetGrowsAndExpires(t *testing.T) {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	now := start
	s := New(time.Hour, func() time.Time { return now })
	const n = 100_000
	for i := range n {
		now = start.Add(time.Duration(i) * time.Hour / n)
		if !s.Add(KeyOf(fmt.Sprintf("evt_%d", i)), now, now) {
			t.Fatalf("Add(evt_%d) = false, want true", i)
		}
	}
	count := func(prefix string, from, to int) int {
		found := 0
		for i := from; i < to; i++ {
			if has(s, fmt.Sprintf("%s_%d", prefix, i)) {
				found++
			}
		}
		return found
	}
	if got := count("evt", 0, n); got != n || s.Len() != n {
		t.Fatalf("found %d of %d keys, Len() = %d", got, n, s.Len())
	}
	if got := count("absent", 0, n); got != 0 {
		t.Fatalf("found %d keys never added, want 0", got)
	}
	if load := float64(s.n) / float64(len(s.tags)); load < minLoad || load > maxLoad {
		t.Fatalf("table of %d slots for %d keys: load %.2f outside %.2f..%.2f", len(s.tags), s.n, load, minLoad, maxLoad)
	}
	// Half an hour on, the first half of the keys has left the window (buckets of 50 s).
	now = start.Add(90 * time.Minute)
	removed := s.Expire()
	left := count("evt", 0, n)
	if removed+left != n || left != s.Len() || count("evt", n-left, n) != left {
		t.Fatalf("Expire removed %d, %d found, Len() %d; want the %d keys of the last half hour found", removed, left, s.Len(), n-removed)
	}
	want := 0
	for i := range n {
		if !start.Add(time.Duration(i) * time.Hour / n).Before(s.Floor()) {
			want++
		}
	}
	if left != want {
		t.Fatalf("%d keys left after half the window expired, want the %d kept from %v on", left, want, s.Floor())
	}
}

// Events timed ahead of their receipt are kept from their own time, each bucket of it taking
// one of the set's maxBuckets slots; an event that would need more is not kept, and its hour
// is uncovered, so a later copy is looked up instead of trusted to the set.
func TestSetBoundsItsBuckets(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	s := New(72*time.Minute, func() time.Time { return now }) // buckets of a minute
	for i := range maxBuckets {
		at := now.Add(time.Duration(i) * time.Minute)
		if !s.Add(KeyOf(fmt.Sprintf("evt_%d", i)), at, at) {
			t.Fatalf("Add of the event %d minutes ahead = false, want true", i)
		}
	}
	far := now.Add(maxBuckets * time.Minute)
	if s.Add(KeyOf("far"), far, far) || has(s, "far") || s.Vouches(far) {
		t.Fatalf("the event %d minutes ahead: kept or vouched for, want neither", maxBuckets)
	}
	if s.Len() != maxBuckets || !has(s, "evt_254") {
		t.Fatalf("Len() = %d, Find(evt_254) = %v; want %d, true", s.Len(), has(s, "evt_254"), maxBuckets)
	}
}

// BenchmarkSetSteady measures a set in its steady state, per new key: the alerter's (a
// 2-minute window at 60,000 keys/s, expired every second; FindOrAdd) and a partition
// writer's (an hour's window bounded to 2,000,000 keys, 15,000 keys/s, expired every 64,000
// keys; Find, then Add). Keys arrive in order of time; the set is filled to its steady size
// first. "alerter-find-add" is the alerter's set asked with Find, then Add.
func BenchmarkSetSteady(b *testing.B) {
	for _, tc := range []struct {
		name        string
		window      time.Duration
		perSecond   int
		maxKeys     int
		expireEvery int
		findOrAdd   bool
	}{
		{"alerter", 2 * time.Minute, 60_000, 0, 60_000, true},
		{"alerter-find-add", 2 * time.Minute, 60_000, 0, 60_000, false},
		{"writer", time.Hour, 15_000, 2_000_000, 64_000, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
			now := start
			s := New(tc.window, func() time.Time { return now })
			if tc.maxKeys > 0 {
				s.SetMaxKeys(tc.maxKeys, 5*time.Minute)
			}
			var seq uint64
			next := func() {
				var id [8]byte
				binary.LittleEndian.PutUint64(id[:], seq)
				k := Key{xxhash.Sum64(id[:]), seq}
				now = start.Add(time.Duration(seq) * time.Second / time.Duration(tc.perSecond))
				if seq%uint64(tc.expireEvery) == 0 {
					s.Expire()
				}
				if tc.findOrAdd {
					s.FindOrAdd(k, now, now)
				} else if _, _, ok := s.Find(k); !ok {
					s.Add(k, now, now)
				}
				seq++
			}
			warm := 2 * tc.perSecond * int(min(tc.window, 10*time.Minute)/time.Second)
			for range warm {
				next()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				next()
			}
			b.ReportMetric(float64(len(s.tags)*6)/float64(s.Len()), "B/key")
		})
	}
}

// Expired buckets leave their keys in the table until a rebuild; those keys are never found,
// and their bucket slots are not reused before they are gone. The alerter's shape: a 2-minute
// window of 1-second buckets, expired every second, for 10 minutes (600 buckets through 255
// slots).
func TestSetExpiresInPlace(t *testing.T) {
	start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	now := start
	s := New(2*time.Minute, func() time.Time { return now })
	const perSecond = 200
	key := func(sec, i int) Key { return KeyOf(fmt.Sprintf("evt_%d_%d", sec, i)) }
	table, moved := &s.tags[0], 0 // a rebuild that is not in place allocates a new table
	for sec := range 600 {
		now = start.Add(time.Duration(sec) * time.Second)
		s.Expire()
		for i := range perSecond {
			at := now.Add(time.Duration(i) * time.Second / perSecond)
			if !s.Add(key(sec, i), at, at) {
				t.Fatalf("second %d: Add of key %d = false, want true", sec, i)
			}
		}
		if &s.tags[0] != table {
			table = &s.tags[0]
			if sec > 200 { // the table's last growth, to the full window, is at second 165
				moved++
			}
		}
		if sec < 130 {
			continue
		}
		// The window ends at the newest key, in the second before (see Set.clock): it holds
		// that second's 120 seconds and the current one; the seconds before it left, though
		// many of their keys are still in the table.
		for _, back := range []int{0, 1, 60, 121} {
			for i := range perSecond {
				if _, _, ok := s.Find(key(sec-back, i)); !ok {
					t.Fatalf("second %d: key %d of second %d not found", sec, i, sec-back)
				}
			}
		}
		for _, back := range []int{122, 125, 130} {
			for i := range perSecond {
				if _, _, ok := s.Find(key(sec-back, i)); ok {
					t.Fatalf("second %d: key %d of second %d, expired, found", sec, i, sec-back)
				}
			}
		}
		if want := 122 * perSecond; s.Len() != want {
			t.Fatalf("second %d: Len() = %d, want %d", sec, s.Len(), want)
		}
	}
	// The table grows to the window (from 64 slots to 24,400 keys: 11 rebuilds), then a
	// steady window is rebuilt about once per 70 % of its keys added: every ~85 seconds.
	if s.rebuilds > 11+480/60 {
		t.Errorf("%d rebuilds in 600 seconds, want at most 19", s.rebuilds)
	}
	// Once the window is steady, its table keeps its size, and is compacted in place.
	if moved > 0 {
		t.Errorf("a steady window's table was allocated anew %d times, want it compacted in place", moved)
	}
}

// Compacting in place keeps every live key findable, also in a run of slots that wraps from
// the table's end to its start, and drops every expired one: keys whose homes are the last
// slot, in two buckets, the first expired.
func TestCompactKeepsWrappedRuns(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	now := t0
	s := New(72*time.Second, func() time.Time { return now }) // 1-second buckets
	last := func(j int) Key {                                 // a key whose home, in a table of 64 slots, is slot 63
		return Key{uint64(0xFFFFFF00+j)<<32 | uint64(j)<<24, uint64(j)}
	}
	var old, kept []Key
	for j := range 20 {
		k := last(j)
		at := t0
		if j%2 == 1 {
			at = t0.Add(time.Second)
			kept = append(kept, k)
		} else {
			old = append(old, k)
		}
		if !s.Add(k, at, at) {
			t.Fatalf("Add of key %d = false", j)
		}
	}
	other := KeyOf("evt_later")
	now = t0.Add(73 * time.Second) // the window moves past t0's bucket
	s.Add(other, now, now)
	if got := s.Expire(); got != len(old) {
		t.Fatalf("Expire removed %d keys, want %d", got, len(old))
	}
	if len(s.tags) != minSlots || s.tags[0] == 0 {
		t.Fatalf("table of %d slots, slot 0 empty: the run does not wrap", len(s.tags))
	}
	table, rebuilds := &s.tags[0], s.rebuilds
	s.rebuild(s.n)
	if s.rebuilds != rebuilds+1 || &s.tags[0] != table {
		t.Fatalf("rebuild was not in place")
	}
	if s.used != len(kept)+1 {
		t.Errorf("%d occupied slots after compacting, want %d", s.used, len(kept)+1)
	}
	occupied := 0
	for _, tag := range s.tags {
		if tag != 0 {
			occupied++
		}
	}
	if occupied != len(kept)+1 {
		t.Errorf("%d tags in the table, want %d", occupied, len(kept)+1)
	}
	for j, k := range append(kept, other) {
		if _, _, ok := s.Find(k); !ok {
			t.Errorf("live key %d not found after compacting", j)
		}
	}
	for j, k := range old {
		if _, _, ok := s.Find(k); ok {
			t.Errorf("expired key %d found after compacting", j)
		}
	}
}

// FindOrAdd answers and records exactly what Find, then Add when Find found nothing, do: two
// sets fed the same keys — repeats, events timed in other hours, times before the floor, a
// bucket per second for longer than the set has bucket slots, expiry and trimming between —
// agree on every answer, on Len, on what they vouch for and on every key's hours.
func TestFindOrAddIsFindThenAdd(t *testing.T) {
	start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	one, two := New(2*time.Minute, clock), New(2*time.Minute, clock)
	one.SetMaxKeys(3000, 30*time.Second)
	two.SetMaxKeys(3000, 30*time.Second)
	keys := make([]Key, 4000)
	for i := range keys {
		keys[i] = KeyOf(fmt.Sprintf("evt_%d", i))
	}
	var seq uint64 = 1
	rnd := func(n uint64) uint64 { // a fixed sequence: the test is the same every run
		seq = seq*6364136223846793005 + 1442695040888963407
		return (seq >> 33) % n
	}
	found := 0
	for step := range 60_000 {
		now = start.Add(time.Duration(step) * 10 * time.Millisecond) // 10 minutes, 600 buckets
		k := keys[rnd(uint64(len(keys)))]
		at := now
		if rnd(50) == 0 {
			at = now.Add(-3 * time.Minute) // before the floor
		}
		eventTime := at.Add(-time.Duration(rnd(3)) * time.Hour)
		_, _, want := one.Find(k)
		if !want {
			one.Add(k, at, eventTime)
		}
		if got := two.FindOrAdd(k, at, eventTime); got != want {
			t.Fatalf("step %d: FindOrAdd() = %v, Find() = %v", step, got, want)
		}
		if want {
			found++
		}
		if step%250 == 0 {
			if a, b := one.Expire(), two.Expire(); a != b {
				t.Fatalf("step %d: Expire() removed %d and %d keys", step, a, b)
			}
		}
		if one.Len() != two.Len() {
			t.Fatalf("step %d: Len() = %d and %d", step, one.Len(), two.Len())
		}
	}
	for h := start.Add(-4 * time.Hour); h.Before(now); h = h.Add(time.Hour) {
		if one.Vouches(h) != two.Vouches(h) {
			t.Errorf("Vouches(%v) = %v and %v", h, one.Vouches(h), two.Vouches(h))
		}
	}
	for _, k := range keys {
		f1, t1, ok1 := one.Find(k)
		f2, t2, ok2 := two.Find(k)
		if ok1 != ok2 || !f1.Equal(f2) || !t1.Equal(t2) {
			t.Fatalf("Find(%v) = %v %v %v and %v %v %v", k, f1, t1, ok1, f2, t2, ok2)
		}
	}
	if found < 10_000 || found > 50_000 {
		t.Errorf("%d of 60,000 keys found: want a mix of repeats and new keys", found)
	}
}

// BenchmarkSetTouched measures FindOrAdd in an owner's shape: a batch's keys probed one by
// one with other work between them (here, copying a 480-byte row, as decoding does), in the
// alerter's steady 2-minute window at 60,000 keys a second. "touched" touches each 256 keys
// of a batch before probing them.
func BenchmarkSetTouched(b *testing.B) {
	const perSecond, batch = 60_000, 256
	type row [60]uint64
	for _, touched := range []bool{false, true} {
		name := "probed"
		if touched {
			name = "touched"
		}
		b.Run(name, func(b *testing.B) {
			start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
			now := start
			s := New(2*time.Minute, func() time.Time { return now })
			var seq uint64
			keys := make([]Key, batch)
			src, dst := make([]row, batch), make([]row, batch)
			run := func() {
				for i := range keys {
					var id [8]byte
					binary.LittleEndian.PutUint64(id[:], seq+uint64(i))
					keys[i] = Key{xxhash.Sum64(id[:]), seq + uint64(i)}
				}
				if touched {
					for _, k := range keys {
						s.Touch(k)
					}
				}
				for i, k := range keys {
					dst[i] = src[i]
					dst[i][0] += seq
					now = start.Add(time.Duration(seq) * time.Second / perSecond)
					if seq%perSecond == 0 {
						s.Expire()
					}
					s.FindOrAdd(k, now, now)
					seq++
				}
			}
			for range 2 * perSecond * 120 / batch {
				run()
			}
			b.ResetTimer()
			for range b.N {
				run()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/key")
		})
	}
}

// A set at its SetMaxKeys bound keeps its table within BytesPerKey a key of the bound — of
// the bound and the keys added since the last Expire, which trims — and, once its window is
// steady, compacts that table in place instead of allocating another.
func TestBoundedTableStaysInPlace(t *testing.T) {
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	now := start
	s := New(2*time.Minute, func() time.Time { return now })
	const maxKeys, perSecond = 5_000, 200
	s.SetMaxKeys(maxKeys, 10*time.Second)
	most := int(float64(maxKeys+perSecond+1)/minLoad) + 1 // a rebuild's table for the bound and a second's keys
	var table *uint32
	moved := 0
	for sec := range 300 {
		now = start.Add(time.Duration(sec) * time.Second)
		s.Expire()
		for i := range perSecond {
			at := now.Add(time.Duration(i) * time.Second / perSecond)
			s.Add(KeyOf(fmt.Sprintf("evt_%d_%d", sec, i)), at, at)
		}
		if len(s.tags) > most {
			t.Fatalf("second %d: table of %d slots, more than the bound's %d", sec, len(s.tags), most)
		}
		if &s.tags[0] != table {
			table = &s.tags[0]
			if sec > 60 {
				moved++
			}
		}
	}
	if s.rebuilds < 10 || moved > 0 {
		t.Errorf("%d rebuilds, %d of them after the first minute into a new table; want at least 10, none", s.rebuilds, moved)
	}
}
