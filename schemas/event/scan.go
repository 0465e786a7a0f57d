package event

import (
	"bytes"
	"strings"
)

// scanEvent decodes data, one event object, into the zero Usage u when the object has the
// shape nearly every event has, and reports whether it did. It exists because decoding an
// event through goccy/go-json's reflection cost more than everything else the collector does
// with it (BenchmarkDecodeNDJSON): here each field is read straight into its place, with no
// intermediate values, and its strings are made by strs, which shares them between the
// events of a body; an event costs no allocation but its tags and units maps.
//
// It handles only what it can decode exactly as goccy/go-json does: keys spelled exactly as
// the fields, each once; strings without escapes or control characters; integers of at most
// 18 digits without leading zeros; true and false; times as Time.UnmarshalJSON reads them;
// and JSON whitespace. Anything else — a null, an escape, an unknown or differently cased
// key, a float, malformed JSON — returns false, u is to be discarded, and the general decoder
// decides, with its own error messages. Whatever scanEvent accepts, the general decoder
// decodes to the same Usage, and checkShape lets through (FuzzScanEvent).
func scanEvent(u *Usage, data []byte, strs *strs, maps *maps) bool {
	s := scanner{data: data, strs: strs}
	var seen uint32 // a bit per field read: a key seen twice goes to the general decoder
	once := func(bit uint32) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	ok := s.object(func(_ int, key []byte) bool {
		switch string(key) {
		case "id":
			return once(1<<0) && s.str(&u.ID, unique)
		case "time":
			return once(1<<1) && s.time(u)
		case "provider":
			return once(1<<2) && s.str(&u.Provider, slotProvider)
		case "model":
			return once(1<<3) && s.str(&u.Model, slotModel)
		case "operation":
			return once(1<<4) && s.str(&u.Operation, slotOperation)
		case "usage":
			return once(1<<5) && s.tokens(&u.Usage)
		case "units":
			return once(1<<6) && scanMap(&s, &u.Units, maps.newUnits(), slotUnits, func(int) (int64, bool) { return s.integer() })
		case "service_tier":
			return once(1<<7) && s.str(&u.ServiceTier, slotServiceTier)
		case "response_id":
			return once(1<<8) && s.str(&u.ResponseID, unique)
		case "status":
			return once(1<<9) && s.str(&u.Status, slotStatus)
		case "latency_ms":
			return once(1<<10) && s.int(&u.LatencyMS)
		case "tags":
			return once(1<<11) && scanMap(&s, &u.Tags, maps.newTags(), slotTags, s.string)
		case "workflow_id":
			return once(1<<12) && s.str(&u.WorkflowID, slotWorkflowID)
		case "prompt_version":
			return once(1<<13) && s.str(&u.PromptVersion, slotPromptVersion)
		case "cache_hit":
			return once(1<<14) && s.bool(&u.CacheHit)
		case "estimated":
			return once(1<<15) && s.bool(&u.Estimated)
		case "estimate_reason":
			return once(1<<16) && s.str(&u.EstimateReason, slotEstimateReason)
		}
		return false
	})
	s.space()
	return ok && s.pos == len(data)
}

// scanner reads JSON from data.
type scanner struct {
	data []byte
	pos  int
	strs *strs
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// next consumes c, after whitespace, if it comes next.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// object reads an object, calling member for each key, the i-th, with the position on its
// value. member reads the value and reports whether it could.
func (s *scanner) object(member func(i int, key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for i := 0; ; i++ {
		key, ok := s.quoted()
		if !ok || !s.next(':') || !member(i, key) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// quoted reads the string that comes next and returns its contents.
func (s *scanner) quoted() ([]byte, bool) {
	s.space()
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, false
	}
	for i := s.pos + 1; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == '"':
			v := s.data[s.pos+1 : i]
			s.pos = i + 1
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// str reads a string into dst, made by strs for slot.
func (s *scanner) str(dst *string, slot int) (ok bool) {
	*dst, ok = s.string(slot)
	return ok
}

// string reads a string made by strs for slot.
func (s *scanner) string(slot int) (string, bool) {
	v, ok := s.quoted()
	if !ok {
		return "", false
	}
	return s.strs.make(slot, v), true
}

func (s *scanner) time(u *Usage) bool {
	s.space()
	start := s.pos
	_, ok := s.quoted()
	return ok && u.Time.UnmarshalJSON(s.data[start:s.pos]) == nil
}

func (s *scanner) int(dst *int64) (ok bool) {
	*dst, ok = s.integer()
	return ok
}

func (s *scanner) integer() (int64, bool) {
	s.space()
	neg := s.pos < len(s.data) && s.data[s.pos] == '-'
	if neg {
		s.pos++
	}
	start := s.pos
	var n int64
	for ; s.pos < len(s.data) && '0' <= s.data[s.pos] && s.data[s.pos] <= '9'; s.pos++ {
		n = n*10 + int64(s.data[s.pos]-'0')
	}
	// 18 digits always fit in an int64; "-0" and leading zeros are left to the general decoder.
	digits := s.pos - start
	if digits == 0 || digits > 18 || s.data[start] == '0' && (digits > 1 || neg) {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func (s *scanner) bool(dst *bool) bool {
	s.space()
	switch rest := s.data[s.pos:]; {
	case bytes.HasPrefix(rest, []byte("true")):
		*dst, s.pos = true, s.pos+len("true")
	case bytes.HasPrefix(rest, []byte("false")):
		*dst, s.pos = false, s.pos+len("false")
	default:
		return false
	}
	return true
}

func (s *scanner) tokens(t *Tokens) bool {
	var seen uint32
	return s.object(func(_ int, key []byte) bool {
		var bit uint32
		var dst *int64
		switch string(key) {
		case "input_tokens":
			bit, dst = 1<<0, &t.Input
		case "output_tokens":
			bit, dst = 1<<1, &t.Output
		case "cached_input_tokens":
			bit, dst = 1<<2, &t.CachedInput
		case "cache_write_tokens":
			bit, dst = 1<<3, &t.CacheWrite
		case "cache_write_1h_tokens":
			bit, dst = 1<<4, &t.CacheWrite1h
		case "reasoning_tokens":
			bit, dst = 1<<5, &t.Reasoning
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return s.int(dst)
	})
}

// scanMap reads an object into m, an empty map, value reading each member's value; the
// strings of member i are made by strs for the slots mapSlot gives from first. Like
// checkShape it refuses objects of maxWidth members or more, duplicates counted: to the
// general decoder, whose checkShape says so.
func scanMap[M ~map[string]V, V any](s *scanner, dst *M, m M, first int, value func(slot int) (V, bool)) bool {
	*dst = m
	return s.object(func(i int, key []byte) bool {
		if i+1 >= maxWidth {
			return false
		}
		v, ok := value(mapSlot(first, i, 1))
		if ok {
			m[s.strs.make(mapSlot(first, i, 0), key)] = v
		}
		return ok
	})
}

// strs makes the strings of the events a decoder reads. A string that equals what the same
// field (slot) held in the previous event is that string again: the events of a body mostly
// share their provider, model, tier, status and tags. Any other is a copy in a chunk shared
// with the strings after it, so that a body's strings cost a few allocations instead of one
// each, and none refers to the body.
type strs struct {
	chunk strings.Builder
	prev  [numSlots]string
}

// Slots of strs: the fields whose values repeat from event to event, then the keys and
// values of the first tags and the keys of the first units by their position.
const (
	unique = iota - 1 // a value that does not repeat (ids)
	slotProvider
	slotModel
	slotOperation
	slotServiceTier
	slotStatus
	slotWorkflowID
	slotPromptVersion
	slotEstimateReason
	slotTags  // tag i's key is slotTags+2i, its value slotTags+2i+1
	slotUnits = slotTags + 2*slottedTags
	numSlots  = slotUnits + 2*slottedUnits

	slottedTags, slottedUnits = 8, 4
	chunkSize                 = 16 << 10
)

// mapSlot is the slot of the key (part 0) or value (1) of member i of the tags (first is
// slotTags) or units (slotUnits); members past the slotted ones are unique.
func mapSlot(first, i, part int) int {
	n := slottedTags
	if first == slotUnits {
		n = slottedUnits
	}
	if i >= n {
		return unique
	}
	return first + 2*i + part
}

func (t *strs) make(slot int, b []byte) string {
	if slot != unique && t.prev[slot] == string(b) {
		return t.prev[slot]
	}
	if t.chunk.Cap()-t.chunk.Len() < len(b) {
		t.chunk = strings.Builder{}
		t.chunk.Grow(max(chunkSize, len(b)))
	}
	start := t.chunk.Len()
	t.chunk.Write(b)
	v := t.chunk.String()[start:]
	if slot != unique {
		t.prev[slot] = v
	}
	return v
}

// maps makes the tags and units maps of a Decoder's events, from those of its earlier
// batches when it has them. A nil *maps makes every map.
type maps struct {
	tags  mapPool[map[string]string, string]
	units mapPool[Units, int64]
}

func (m *maps) newTags() map[string]string {
	if m == nil {
		return make(map[string]string)
	}
	return m.tags.get()
}

func (m *maps) newUnits() Units {
	if m == nil {
		return make(Units)
	}
	return m.units.get()
}

func (m *maps) recycle() {
	m.tags.recycle()
	m.units.recycle()
}

// mapPool hands out empty maps: recycled ones, else new ones. It remembers those it handed
// out since the last recycle, which empties them and takes them back.
type mapPool[M ~map[string]V, V any] struct {
	free, out []M
}

func (p *mapPool[M, V]) get() M {
	var m M
	if n := len(p.free); n > 0 {
		m, p.free = p.free[n-1], p.free[:n-1]
	} else {
		m = make(M)
	}
	p.out = append(p.out, m)
	return m
}

// maxRecycled bounds the members of a map that is recycled: one that held more (a hostile
// event's; Limits.MaxTags is 32 by default) is dropped rather than kept at that size.
const maxRecycled = 64

func (p *mapPool[M, V]) recycle() {
	for _, m := range p.out {
		if len(m) <= maxRecycled {
			clear(m)
			p.free = append(p.free, m)
		}
	}
	clear(p.out)
	p.out = p.out[:0]
}
