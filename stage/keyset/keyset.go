// Package keyset remembers, in about 18 bytes per event, which event ids and provider
// responses were seen within a window: 40-bit tags of their keys in open-addressing tables,
// one per time bucket. A key absent from a set was not seen (for the hours the set vouches
// for); a key present may be a false positive, so whoever must be exact confirms it elsewhere
// — the aggregator in ClickHouse (aggregator/dedup), the alerter by accepting a rare miss.
package keyset

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Key identifies an event id with 128 bits: two independent 64-bit hashes. A Filter tells the
// ids of one batch apart by the whole key (a collision, about 1e-20 for a billion ids, would
// drop a real event); a Set keeps 40 bits of it and confirms what it finds in ClickHouse.
type Key [2]uint64

// keySuffix makes the second hash independent of the first.
const keySuffix = "\x00tokenmeter-dedup"

// KeyOf returns the key of an event id.
func KeyOf(id string) Key {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(id)
	_, _ = d.WriteString(keySuffix)
	return Key{xxhash.Sum64String(id), d.Sum64()}
}

// ResponseKeyOf returns the key of a provider response: that of the event's partition key
// (stream.PartitionKey — "response", NUL, the provider in lower case, NUL, the response id),
// so that two reports of one call under different event ids have one key. It is meant for a
// Set of its own, beside the set of event ids.
//
// It equals KeyOf(stream.PartitionKey(provider, responseID, "")) for a non-empty responseID,
// computed without building the key: the aggregator calls it for every row it filters.
func ResponseKeyOf(provider, responseID string) Key {
	if responseID == "" {
		return KeyOf(stream.PartitionKey(provider, responseID, ""))
	}
	provider = strings.ToLower(provider) // no copy when it is lower case already
	var buf [128]byte                    // room for the usual provider and response id
	n := len(stream.ResponseKeyPrefix) + len(provider) + 1 + len(responseID)
	if n+len(keySuffix) > len(buf) {
		var a, b xxhash.Digest
		a.Reset()
		b.Reset()
		for _, d := range [...]*xxhash.Digest{&a, &b} {
			_, _ = d.WriteString(stream.ResponseKeyPrefix)
			_, _ = d.WriteString(provider)
			_, _ = d.WriteString("\x00")
			_, _ = d.WriteString(responseID)
		}
		_, _ = b.WriteString(keySuffix)
		return Key{a.Sum64(), b.Sum64()}
	}
	b := append(buf[:0], stream.ResponseKeyPrefix...)
	b = append(b, provider...)
	b = append(b, 0)
	b = append(b, responseID...)
	b = append(b, keySuffix...)
	return Key{xxhash.Sum64(b[:n]), xxhash.Sum64(b)}
}

// Set holds 40-bit tags of the keys of events kept from a time within a window of now (the
// caller chooses that time: the aggregator keeps an event from the later of its receipt and
// its own time), each with the bucket of that time, so that whole buckets expire at once. A
// bucket spans a 72nd of the window (50 s of the aggregator's default hour), so the set holds
// at most a 72nd more than the window.
//
// The tags live in one open-addressing table (linear probing, the slot derived from the tag,
// so that the table can be rebuilt without the keys): 6 bytes a slot, at a load between
// minLoad and maxLoad — 7 to 12 bytes a key (BytesPerKey; 13.5 at most for a set without a
// bound, see inPlace). A rebuild compacts the table in place when it is about the size
// needed, so a steady window's table is never allocated again. Find of a key not in the set
// answers false, except for a tag collision (about n/2^40 for n keys in the set); Find of a
// key in the set always answers true, with the hours of event time the key's copy was timed
// in, where the caller confirms it.
//
// It also remembers which hours of event time it cannot vouch for: those of every event that
// left it, or was written without entering it (Add of a time before Floor), or that its
// owner marks (Uncover: what ClickHouse held outside the window at start-up). An event timed
// in any other hour is either in the set or nowhere, so the owner looks up in ClickHouse
// only events timed in those hours — a backfill of history into empty hours costs no lookup.
//
// It is not safe for concurrent use: it belongs to the one worker that writes its partition.
type Set struct {
	window time.Duration
	width  int64 // of a bucket, in seconds
	now    func() time.Time
	// tags holds the upper 32 bits of each key's tag (0: an empty slot), meta the lower 8
	// bits and the key's bucket slot (an index into slots).
	tags []uint32
	meta []uint16
	n    int // keys of live buckets in the table
	// used counts the occupied slots: the n live keys and those of expired buckets, which
	// stay in the table, ignored, until the next rebuild (see Expire).
	used    int
	buckets map[int64]*bucket
	slots   [maxBuckets]*bucket // bucket slot → bucket; nil when free, expired while its keys remain
	floor   int64               // oldest bucket kept
	// latest is the newest time an event was kept from (Unix seconds; 0: none yet). The
	// window ends there rather than at now() while it is behind: see clock.
	latest int64
	gone   map[int64]struct{} // hours (Unix seconds / 3600) of event time not vouched for
	// maxKeys, when above 0, bounds the keys kept (SetMaxKeys); buckets younger than keep
	// stay whatever their number.
	maxKeys int
	keep    time.Duration
	// touched keeps Touch's loads from being optimized away.
	touched uint32
	// run is compact's scratch; rebuilds counts rebuilds, for tests.
	run      []slotted
	rebuilds int
}

// bucket holds the hours of the events kept from one bucket's span.
type bucket struct {
	id       int64
	slot     uint8
	n        int
	hours    map[int64]struct{}
	lo, hi   int64 // first and last hour
	lastHour int64 // the hour added last, which most events of a bucket share
}

const (
	// bucketsPerWindow is the number of buckets a window spans.
	bucketsPerWindow = 72
	// maxBuckets bounds the buckets held at once (the window's, the current one, and those
	// of events timed ahead of their receipt); an event that would need another is not kept.
	maxBuckets = 255
	// The table is rebuilt, with the live keys alone, at minLoad when an Add would take its
	// occupied slots past maxLoad, when no bucket slot is free, and by an Expire that leaves
	// more expired keys than live ones. Rebuilding the whole table whenever a bucket expires
	// cost a steady window a rebuild per bucket span: 2.4 µs per key added to the alerter's
	// 2-minute set of 1-second buckets. Between minLoad and maxLoad, a steady window is
	// rebuilt about once per 70 % of its keys added (BenchmarkSetSteady), and linear probing
	// scans about 2 (at 0.5) to 23 (at 0.85) slots to find a key absent.
	minLoad, maxLoad = 0.5, 0.85
	minSlots         = 64
	// BytesPerKey bounds the table's size per live key of a set bounded by SetMaxKeys: 6
	// bytes a slot at minLoad. A set without a bound may hold an eighth more (inPlace).
	BytesPerKey = 12
)

// expired marks a bucket slot whose keys are still in the table: not reused before a rebuild.
var expired = &bucket{}

// New returns an empty set keeping events kept from within window of now().
func New(window time.Duration, now func() time.Time) *Set {
	s := &Set{
		window: window, width: max(int64(window/time.Second)/bucketsPerWindow, 1), now: now,
		tags: make([]uint32, minSlots), meta: make([]uint16, minSlots),
		buckets: make(map[int64]*bucket), gone: make(map[int64]struct{}),
	}
	s.floor = s.floorBucket()
	return s
}

func (s *Set) bucketOf(t time.Time) int64 { return t.Unix() / s.width }

func (s *Set) floorBucket() int64 { return s.bucketOf(s.clock().Add(-s.window)) }

// clock is where the window ends: now, or the newest time an event was kept from when that is
// earlier. A writer working through a backlog keeps events from minutes or hours ago; a
// window ending at now would leave them all behind its floor, and every one of them would be
// looked up in ClickHouse — slower than the backlog grows, at a high rate with a window
// shortened by SetMaxKeys. Ending where the events are keeps the window over them, and is as
// exact: what leaves the window is uncovered whichever clock moves it.
func (s *Set) clock() time.Time {
	now := s.now()
	if s.latest != 0 && s.latest < now.Unix() {
		return time.Unix(s.latest, 0)
	}
	return now
}

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

// tagOf returns the 40 bits of k the set keeps, as the slot word (never 0) and the low byte.
func tagOf(k Key) (hi uint32, lo uint8) {
	t := k[0] >> 24
	hi, lo = uint32(t>>8), uint8(t)
	if hi == 0 {
		hi = 1
	}
	return hi, lo
}

// home is the slot where the probe for a tag starts in a table of size slots.
func home(hi uint32, size int) int {
	h, _ := bits.Mul64(uint64(hi)<<32, uint64(size))
	return int(h)
}

// Floor is the start of the oldest bucket the set covers: an event kept from before it may be
// in ClickHouse without being in the set, so the caller must look it up there.
func (s *Set) Floor() time.Time { return time.Unix(s.floor*s.width, 0).UTC() }

// Find reports whether k may be in the set and, when it may, the span of event times its copy
// was timed in: from the start of the first hour to the end of the last of the buckets whose
// tag matched.
func (s *Set) Find(k Key) (from, to time.Time, ok bool) {
	hi, lo := tagOf(k)
	var first, last int64
	size := len(s.tags)
	for i := home(hi, size); s.tags[i] != 0; {
		if b := s.slots[uint8(s.meta[i])]; s.tags[i] == hi && uint8(s.meta[i]>>8) == lo && b != expired {
			if !ok || b.lo < first {
				first = b.lo
			}
			if !ok || b.hi > last {
				last = b.hi
			}
			ok = true
		}
		if i++; i == size {
			i = 0
		}
	}
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	return time.Unix(first*3600, 0).UTC(), time.Unix(last*3600+3599, 0).UTC(), true
}

// Touch loads the slot where a probe for k starts, and returns nothing. A table of millions
// of keys is larger than the cache, so each probe waits for memory, and an owner that probes
// between other work waits once per key (~300 ns here): touched first, in a loop of their
// own, a batch's keys' loads overlap, and the probes that follow find their slots cached
// (BenchmarkSetTouched). A table rebuilt in between costs a wait, not a wrong answer.
func (s *Set) Touch(k Key) {
	hi, _ := tagOf(k)
	i := home(hi, len(s.tags))
	s.touched += s.tags[i] ^ uint32(s.meta[i])
}

// Ahead touches a batch's keys in a set a chunk at a time, ahead of their probes.
type Ahead struct {
	set        *Set
	keys       []Key
	from, next int // the keys touched last: keys[from:next]
}

// aheadChunk is how many keys Ahead touches at once: their slots, two cache lines each in the
// worst case, stay well within a core's 1 MiB cache while they are probed.
const aheadChunk = 256

// Ahead returns an Ahead for keys, of which a zero Key is not touched.
func (s *Set) Ahead(keys []Key) Ahead { return Ahead{set: s, keys: keys} }

// At touches keys[i] and the chunk after it unless they were touched already: call it before
// probing keys[i].
func (a *Ahead) At(i int) {
	if i >= a.from && i < a.next {
		return
	}
	a.from, a.next = i, min(i+aheadChunk, len(a.keys))
	for _, k := range a.keys[a.from:a.next] {
		if k != (Key{}) {
			a.set.Touch(k)
		}
	}
}

// Vouches reports whether the set holds every key written for an event timed in the hour of
// eventTime, so that a key absent from the set is absent from ClickHouse too. It is true for
// any hour no event has left the set from (see Set).
func (s *Set) Vouches(eventTime time.Time) bool {
	_, gone := s.gone[hourOf(eventTime)]
	return !gone
}

// Uncover marks the hour of eventTime as one the set cannot vouch for: ClickHouse holds an
// event timed in it that the set does not.
func (s *Set) Uncover(eventTime time.Time) { s.gone[hourOf(eventTime)] = struct{}{} }

// Add records k as kept from at, for an event timed eventTime. It reports false, and records
// nothing but what follows, when k's tag is already recorded in at's bucket (only the hour is
// added to the bucket), or when at lies before Floor or the set holds maxBuckets buckets
// already (the hour of eventTime is uncovered instead).
func (s *Set) Add(k Key, at, eventTime time.Time) bool {
	b, _ := s.bucketFor(at, eventTime)
	if b == nil {
		return false
	}
	hi, lo := tagOf(k)
	m := newMeta(lo, b)
	size := len(s.tags)
	i := home(hi, size)
	for ; s.tags[i] != 0; i++ {
		if s.tags[i] == hi && s.meta[i] == m {
			return false
		}
		if i+1 == size {
			i = -1
		}
	}
	s.put(i, m, hi)
	b.n++
	return true
}

func newMeta(lo uint8, b *bucket) uint16 { return uint16(lo)<<8 | uint16(b.slot) }

// bucketFor returns the bucket of at, made when new (made), with the hour of eventTime
// added to it; or nil, with that hour uncovered, when at lies before Floor or the set holds
// maxBuckets buckets already.
func (s *Set) bucketFor(at, eventTime time.Time) (b *bucket, made bool) {
	id := s.bucketOf(at)
	if id < s.floor {
		s.Uncover(eventTime)
		return nil, false
	}
	s.latest = max(s.latest, at.Unix())
	if b = s.buckets[id]; b == nil {
		if b = s.newBucket(id); b == nil {
			s.Uncover(eventTime)
			return nil, false
		}
		made = true
	}
	if h := hourOf(eventTime); h != b.lastHour {
		b.hours[h] = struct{}{}
		b.lastHour = h
		b.lo, b.hi = min(b.lo, h), max(b.hi, h)
	}
	return b, made
}

// put stores a new key's tag in the empty slot i, or, when the table is too full for another
// key or i is -1, rebuilds the table and probes for a slot again.
func (s *Set) put(i int, m uint16, hi uint32) {
	if full := float64(s.used+1) > maxLoad*float64(len(s.tags)); full || i < 0 {
		if full {
			s.rebuild(s.n + 1)
		}
		s.insert(hi, m)
	} else {
		s.tags[i], s.meta[i] = hi, m
	}
	s.n++
	s.used++
}

// FindOrAdd is Find, then Add when Find finds nothing, in one probe of the table: it
// reports whether k may be in the set (a live bucket holds its tag) and, when it is not,
// records k as kept from at, for an event timed eventTime. An owner that only asks whether
// it saw a key before (the alerter) saves the second probe (BenchmarkSetSteady).
func (s *Set) FindOrAdd(k Key, at, eventTime time.Time) bool {
	hi, lo := tagOf(k)
	size := len(s.tags)
	i := home(hi, size)
	for ; s.tags[i] != 0; i++ {
		if s.tags[i] == hi && uint8(s.meta[i]>>8) == lo && s.slots[uint8(s.meta[i])] != expired {
			return true
		}
		if i+1 == size {
			i = -1
		}
	}
	b, made := s.bucketFor(at, eventTime)
	if b == nil {
		return false
	}
	if made {
		i = -1 // making a bucket may have rebuilt the table
	}
	s.put(i, newMeta(lo, b), hi)
	b.n++
	return false
}

func (s *Set) newBucket(id int64) *bucket {
	if b := s.freeBucket(id); b != nil {
		return b
	}
	if s.used > s.n { // expired keys hold slots: free them
		s.rebuild(s.n)
		return s.freeBucket(id)
	}
	return nil
}

func (s *Set) freeBucket(id int64) *bucket {
	for slot, b := range s.slots {
		if b == nil {
			b = &bucket{id: id, slot: uint8(slot), hours: make(map[int64]struct{}), lastHour: -1, lo: math.MaxInt64, hi: math.MinInt64}
			s.slots[slot] = b
			s.buckets[id] = b
			return b
		}
	}
	return nil
}

// insert puts a tag known to be absent into the table, which has room.
func (s *Set) insert(hi uint32, m uint16) {
	size := len(s.tags)
	i := home(hi, size)
	for s.tags[i] != 0 {
		if i++; i == size {
			i = 0
		}
	}
	s.tags[i], s.meta[i] = hi, m
}

// rebuild moves the tags of live buckets into a table sized for n keys at minLoad, and frees
// the slots of expired buckets. A table already of about that size is compacted in place:
// a steady window's table stays the same size from one rebuild to the next, and a new one
// would be memory the process touches for the first time — page faults that cost ~12 µs per
// 4 KiB here, three quarters of the pipeline's faults before (perf record -e page-faults).
func (s *Set) rebuild(n int) {
	s.rebuilds++
	size := max(int(float64(n)/minLoad)+1, minSlots)
	if s.inPlace(size) {
		s.compact()
	} else {
		tags, meta := s.tags, s.meta
		s.tags, s.meta = make([]uint32, size), make([]uint16, size)
		for i, t := range tags {
			if t != 0 && s.live(meta[i]) {
				s.insert(t, meta[i])
			}
		}
	}
	for i, b := range s.slots {
		if b == expired {
			s.slots[i] = nil
		}
	}
	s.used = s.n
}

// inPlaceSlack: a table within 1/inPlaceSlack of the size a rebuild would make is compacted
// in place (inPlace).
const inPlaceSlack = 8

// inPlace reports whether a rebuild for a table of size slots compacts the table it has: one
// at most an eighth smaller (its load then at most 4/7, not 1/2) or an eighth larger (up to
// 13.5 bytes a key instead of 12). A set bounded by SetMaxKeys stays within its bound: every
// table it has was made for no more keys than the bound.
func (s *Set) inPlace(size int) bool {
	have := len(s.tags)
	return have >= size-size/inPlaceSlack && have <= size+size/inPlaceSlack
}

// live reports whether a slot's meta names a bucket still in the window.
func (s *Set) live(m uint16) bool {
	b := s.slots[uint8(m)]
	return b != nil && b != expired
}

// compact drops the tags of expired buckets from the table in place. It goes around the table
// once, from an empty slot, a run of occupied slots at a time: it takes the run's live tags
// out, empties the run, and inserts them again from their homes. A tag's home lies in its run
// (every slot from a tag's home to the tag is occupied), and fewer tags of the same homes
// end no later than the run did, so they land in the run and leave every other run as it was.
func (s *Set) compact() {
	size := len(s.tags)
	i := slices.Index(s.tags, 0) // the table is never full
	run := s.run[:0]
	for range size {
		if i++; i == size {
			i = 0
		}
		if t := s.tags[i]; t != 0 {
			if s.live(s.meta[i]) {
				run = append(run, slotted{t, s.meta[i]})
			}
			s.tags[i] = 0
			continue
		}
		for _, e := range run {
			s.insert(e.tag, e.meta)
		}
		run = run[:0]
	}
	s.run = run[:0]
}

// slotted is a tag and its meta, out of the table while compact places them again.
type slotted struct {
	tag  uint32
	meta uint16
}

// Expire drops the buckets that have left the window — and, past SetMaxKeys, the oldest
// others — uncovering the hours of their events, and returns how many keys it removed.
func (s *Set) Expire() int {
	floor := s.floorBucket()
	n := 0
	for id, b := range s.buckets {
		if id >= floor {
			continue
		}
		for h := range b.hours {
			s.gone[h] = struct{}{}
		}
		n += b.n
		s.slots[b.slot] = expired
		delete(s.buckets, id)
	}
	s.floor = max(s.floor, floor)
	n += s.trim()
	s.n -= n
	if s.used-s.n > s.n { // mostly expired keys: give the memory back
		s.rebuild(s.n)
	}
	return n
}

// SetMaxKeys bounds the keys the set keeps to about n (the table takes at most BytesPerKey
// a key): past it, Expire drops the oldest buckets before they leave the window, as if the
// window were shorter, never one younger than keep. What leaves early is uncovered like what
// leaves on time, so the caller looks it up in ClickHouse: memory is bounded, exactness is
// not touched, and only copies of events older than the shortened window cost a lookup.
func (s *Set) SetMaxKeys(n int, keep time.Duration) { s.maxKeys, s.keep = n, keep }

// trim drops the oldest buckets while the set holds more than maxKeys, and returns how many
// keys it removed.
func (s *Set) trim() int {
	n := 0
	youngest := s.bucketOf(s.clock().Add(-s.keep))
	for s.maxKeys > 0 && s.n-n > s.maxKeys {
		var oldest *bucket
		for _, b := range s.buckets {
			if oldest == nil || b.id < oldest.id {
				oldest = b
			}
		}
		if oldest == nil || oldest.id >= youngest {
			break
		}
		for h := range oldest.hours {
			s.gone[h] = struct{}{}
		}
		n += oldest.n
		s.slots[oldest.slot] = expired
		delete(s.buckets, oldest.id)
		s.floor = max(s.floor, oldest.id+1)
	}
	return n
}

// Len is the number of keys in the set.
func (s *Set) Len() int { return s.n }
