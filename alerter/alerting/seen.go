package alerting

import (
	"slices"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/stage/keyset"
)

// SeenWindow is how long the alerter remembers the event ids and provider responses it
// counted, so that a copy of an event (a client's re-send, a redelivery) and a second report
// of one call (the proxy's and an SDK's) count once in the windows and budgets, as they do
// in ClickHouse. Both usually come within seconds; a copy later than this counts twice in the
// alerter only (never in ClickHouse). Memory: about 9 bytes per key (keyset.BytesPerKey at
// most), two keys per event with a response id, bounded by Config.SeenMaxBytes.
const SeenWindow = 2 * time.Minute

// DefaultSeenMaxBytes bounds the memory of the ids and responses the alerter remembers: two
// minutes of them cost ~110 MB at 50,000 events/s and ~430 MB at 200,000. Past the bound the
// window shortens (above ~25,000 events/s for the default), never below MinSeenWindow.
const DefaultSeenMaxBytes = 64 << 20

// MinSeenWindow is the shortest the bound makes the window: the seconds in which the proxy's
// and an SDK's reports of one call, and a client's retries, arrive.
const MinSeenWindow = 30 * time.Second

// seen remembers the ids and responses counted within SeenWindow (keyset.Set: 40-bit tags; a
// tag collision, about n/2^40 for n keys, would drop one event from alerting, never from
// ClickHouse). Not safe for concurrent use: the alerter's decodeMu guards it.
type seen struct {
	ids, responses *keyset.Set
	// keys and rkeys are the keys of the rows of the batch being counted (prepare); an rkey
	// is zero for a row without a response id.
	keys, rkeys          []keyset.Key
	idsAhead, respsAhead keyset.Ahead
}

// newSeen returns an empty seen whose sets together take about maxBytes at most (0 or
// negative: unbounded), whatever the rate, except that they always keep MinSeenWindow.
func newSeen(now func() time.Time, maxBytes int64) *seen {
	s := &seen{ids: keyset.New(SeenWindow, now), responses: keyset.New(SeenWindow, now)}
	if maxBytes > 0 {
		n := int(max(maxBytes/keyset.BytesPerKey/2, 1))
		s.ids.SetMaxKeys(n, MinSeenWindow)
		s.responses.SetMaxKeys(n, MinSeenWindow)
	}
	return s
}

// prepare computes the keys of a batch's rows, for duplicate to probe the sets with: their
// slots are touched a chunk ahead of the probes (keyset.Ahead), which halves what the probes
// of sets larger than the cache cost (keyset.BenchmarkSetTouched).
func (s *seen) prepare(rows []batch.Row) {
	s.keys = slices.Grow(s.keys[:0], len(rows))[:len(rows)]
	s.rkeys = slices.Grow(s.rkeys[:0], len(rows))[:len(rows)]
	for i := range rows {
		r := &rows[i]
		s.keys[i], s.rkeys[i] = keyset.KeyOf(r.ID), keyset.Key{}
		if r.ResponseID != "" {
			s.rkeys[i] = keyset.ResponseKeyOf(r.Provider, r.ResponseID)
		}
	}
	s.idsAhead, s.respsAhead = s.ids.Ahead(s.keys), s.responses.Ahead(s.rkeys)
}

// duplicate reports whether r, the i-th row of the batch prepared, was counted already — by
// its id, or as another report of its provider response — and remembers it otherwise. The
// id of a second report is remembered too: a copy of it is a duplicate either way.
func (s *seen) duplicate(i int, r *batch.Row, now time.Time) bool {
	s.idsAhead.At(i)
	s.respsAhead.At(i)
	if s.ids.FindOrAdd(s.keys[i], now, r.Time) {
		return true
	}
	return r.ResponseID != "" && s.responses.FindOrAdd(s.rkeys[i], now, r.Time)
}

// expire drops what left the window, and what is past the bound.
func (s *seen) expire() {
	s.ids.Expire()
	s.responses.Expire()
}
