package alerting

import (
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/stage/keyset"
)

// SeenWindow is how long the alerter remembers the event ids and provider responses it
// counted, so that a copy of an event (a client's re-send, a redelivery) and a second report
// of one call (the proxy's and an SDK's) count once in the windows and budgets, as they do
// in ClickHouse. Both usually come within seconds; a copy later than this counts twice in the
// alerter only (never in ClickHouse). Memory: about 9 bytes per key (keyset.BytesPerKey at
// most), two keys per event with a response id — 110 MB at a sustained 50,000 events/s.
const SeenWindow = 2 * time.Minute

// seen remembers the ids and responses counted within SeenWindow (keyset.Set: 40-bit tags; a
// tag collision, about n/2^40 for n keys, would drop one event from alerting, never from
// ClickHouse). Not safe for concurrent use: the alerter's decodeMu guards it.
type seen struct {
	ids, responses *keyset.Set
}

func newSeen(now func() time.Time) *seen {
	return &seen{ids: keyset.New(SeenWindow, now), responses: keyset.New(SeenWindow, now)}
}

// duplicate reports whether r was counted already — by its id, or as another report of its
// provider response — and remembers it otherwise.
func (s *seen) duplicate(r *batch.Row, now time.Time) bool {
	id := keyset.KeyOf(r.ID)
	if _, _, ok := s.ids.Find(id); ok {
		return true
	}
	var resp keyset.Key
	if r.ResponseID != "" {
		resp = keyset.ResponseKeyOf(r.Provider, r.ResponseID)
		if _, _, ok := s.responses.Find(resp); ok {
			return true
		}
		s.responses.Add(resp, now, r.Time)
	}
	s.ids.Add(id, now, r.Time)
	return false
}

// expire drops what left the window.
func (s *seen) expire() {
	s.ids.Expire()
	s.responses.Expire()
}
