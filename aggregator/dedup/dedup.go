// Package dedup is the per-partition set of event ids already written to ClickHouse, each
// with the fingerprint of its content. The aggregator's single writer of a partition consults
// it before every insert, so an event id never reaches usage_events twice while its first copy
// is inside the window, and a second copy whose content differs is recognised as a conflict.
// A second Set of the same kind holds the provider responses (ResponseKeyOf) written, so that
// one call reported by two emitters under different event ids is written once.
package dedup

import (
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Key identifies an event id with 128 bits: two independent 64-bit hashes, so that a
// collision — which would silently drop a real event — is out of reach even for billions of
// ids (about 1e-20 for a billion ids, against 1e-2 with 64 bits).
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

// Set holds the keys of events kept from a time within a window of now (the caller chooses
// that time: the aggregator keeps an event from the later of its receipt and its own time),
// bucketed by that time, so that whole buckets expire at once. A bucket spans a 72nd of the
// window (50 s of the aggregator's default hour), so the set holds at most a 72nd more than
// the window.
//
// It also remembers which hours of event time it cannot vouch for: those of every event that
// left it, or was written without entering it (Add of a time before Floor), or that its
// owner marks (Uncover: what ClickHouse held outside the window at start-up). An event timed
// in any other hour is either in the set or nowhere, so the owner looks up in ClickHouse
// only events timed in those hours — a backfill of history into empty hours costs no lookup.
//
// It is not safe for concurrent use: it belongs to the one worker that writes its partition.
type Set struct {
	window  time.Duration
	width   int64 // of a bucket, in seconds
	now     func() time.Time
	ids     map[Key]uint64 // key → content fingerprint
	buckets map[int64]*bucket
	floor   int64              // oldest bucket kept
	gone    map[int64]struct{} // hours (Unix seconds / 3600) of event time not vouched for
}

// bucket holds the keys kept from one bucket's span, and the hours of their events' times.
type bucket struct {
	keys     []Key
	hours    map[int64]struct{}
	lastHour int64 // the hour added last, which most events of a bucket share
}

// bucketsPerWindow is the number of buckets a window spans.
const bucketsPerWindow = 72

// New returns an empty set keeping events kept from within window of now().
func New(window time.Duration, now func() time.Time) *Set {
	s := &Set{
		window: window, width: max(int64(window/time.Second)/bucketsPerWindow, 1), now: now,
		ids: make(map[Key]uint64), buckets: make(map[int64]*bucket), gone: make(map[int64]struct{}),
	}
	s.floor = s.floorBucket()
	return s
}

func (s *Set) bucketOf(t time.Time) int64 { return t.Unix() / s.width }

func (s *Set) floorBucket() int64 { return s.bucketOf(s.now().Add(-s.window)) }

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

// Floor is the start of the oldest bucket the set covers: an event kept from before it may be
// in ClickHouse without being in the set, so the caller must look it up there.
func (s *Set) Floor() time.Time { return time.Unix(s.floor*s.width, 0).UTC() }

// Has reports whether key is in the set.
func (s *Set) Has(k Key) bool {
	_, ok := s.ids[k]
	return ok
}

// Lookup returns the content fingerprint recorded with key, and whether key is in the set.
func (s *Set) Lookup(k Key) (fingerprint uint64, ok bool) {
	fingerprint, ok = s.ids[k]
	return fingerprint, ok
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

// Add records key, with the fingerprint of its content, as kept from at, for an event timed
// eventTime. It reports false, and records nothing, when the key is already present (the
// first fingerprint stays) or at lies before Floor (its bucket would expire at once: the hour
// of eventTime is uncovered instead).
func (s *Set) Add(k Key, fingerprint uint64, at, eventTime time.Time) bool {
	b := s.bucketOf(at)
	if b < s.floor {
		s.Uncover(eventTime)
		return false
	}
	if _, ok := s.ids[k]; ok {
		return false
	}
	s.ids[k] = fingerprint
	bk := s.buckets[b]
	if bk == nil {
		bk = &bucket{hours: make(map[int64]struct{}), lastHour: -1}
		s.buckets[b] = bk
	}
	bk.keys = append(bk.keys, k)
	if h := hourOf(eventTime); h != bk.lastHour {
		bk.hours[h] = struct{}{}
		bk.lastHour = h
	}
	return true
}

// Expire drops the buckets that have left the window, uncovering the hours of their events,
// and returns how many keys it removed.
func (s *Set) Expire() int {
	floor := s.floorBucket()
	if floor <= s.floor {
		return 0
	}
	n := 0
	for b, bk := range s.buckets {
		if b >= floor {
			continue
		}
		for _, k := range bk.keys {
			delete(s.ids, k)
		}
		for h := range bk.hours {
			s.gone[h] = struct{}{}
		}
		n += len(bk.keys)
		delete(s.buckets, b)
	}
	s.floor = floor
	return n
}

// Len is the number of keys in the set.
func (s *Set) Len() int { return len(s.ids) }
