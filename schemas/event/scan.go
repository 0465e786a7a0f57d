package event

import "strings"

// scanEvent decodes data, one event object, into the zero Usage u when the object has the
// shape nearly every event has, and reports whether it did. It exists because decoding an
// event through goccy/go-json's reflection cost more than everything else the collector does
// with it (BenchmarkDecodeNDJSON): here each field is read straight into its place, with no
// intermediate values, and every string is a substring of text, the same bytes as data, so
// an event costs no allocation but its tags and units maps.
//
// It handles only what it can decode exactly as goccy/go-json does: keys spelled exactly as
// the fields, each once; strings without escapes or control characters; integers of at most
// 18 digits without leading zeros; true and false; times as Time.UnmarshalJSON reads them;
// and JSON whitespace. Anything else — a null, an escape, an unknown or differently cased
// key, a float, malformed JSON — returns false, u is to be discarded, and the general decoder
// decides, with its own error messages. Whatever scanEvent accepts, the general decoder
// decodes to the same Usage, and checkShape lets through (FuzzScanEvent).
func scanEvent(u *Usage, data []byte, text string) bool {
	s := scanner{data: data, text: text}
	var seen uint32 // a bit per field read: a key seen twice goes to the general decoder
	once := func(bit uint32) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	ok := s.object(func(key string) bool {
		switch key {
		case "id":
			return once(1<<0) && s.str(&u.ID)
		case "time":
			return once(1<<1) && s.time(u)
		case "provider":
			return once(1<<2) && s.str(&u.Provider)
		case "model":
			return once(1<<3) && s.str(&u.Model)
		case "operation":
			return once(1<<4) && s.str(&u.Operation)
		case "usage":
			return once(1<<5) && s.tokens(&u.Usage)
		case "units":
			return once(1<<6) && scanMap(&s, &u.Units, s.integer)
		case "service_tier":
			return once(1<<7) && s.str(&u.ServiceTier)
		case "response_id":
			return once(1<<8) && s.str(&u.ResponseID)
		case "status":
			return once(1<<9) && s.str(&u.Status)
		case "latency_ms":
			return once(1<<10) && s.int(&u.LatencyMS)
		case "tags":
			return once(1<<11) && scanMap(&s, &u.Tags, s.string)
		case "workflow_id":
			return once(1<<12) && s.str(&u.WorkflowID)
		case "prompt_version":
			return once(1<<13) && s.str(&u.PromptVersion)
		case "cache_hit":
			return once(1<<14) && s.bool(&u.CacheHit)
		case "estimated":
			return once(1<<15) && s.bool(&u.Estimated)
		case "estimate_reason":
			return once(1<<16) && s.str(&u.EstimateReason)
		}
		return false
	})
	s.space()
	return ok && s.pos == len(text)
}

// scanner reads JSON from text; data holds the same bytes, for Time.UnmarshalJSON.
type scanner struct {
	data []byte
	text string
	pos  int
}

func (s *scanner) space() {
	for s.pos < len(s.text) {
		switch s.text[s.pos] {
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
	if s.pos < len(s.text) && s.text[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// object reads an object, calling member for each key with the position on its value.
// member reads the value and reports whether it could.
func (s *scanner) object(member func(key string) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		var key string
		if !s.str(&key) || !s.next(':') || !member(key) {
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

// quoted finds the string that comes next and returns the positions of its quotes.
func (s *scanner) quoted() (open, close int, ok bool) {
	s.space()
	if s.pos >= len(s.text) || s.text[s.pos] != '"' {
		return 0, 0, false
	}
	for i := s.pos + 1; i < len(s.text); i++ {
		switch c := s.text[i]; {
		case c == '"':
			open, s.pos = s.pos, i+1
			return open, i, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

func (s *scanner) string() (string, bool) {
	open, close, ok := s.quoted()
	if !ok {
		return "", false
	}
	return s.text[open+1 : close], true
}

func (s *scanner) str(dst *string) (ok bool) {
	*dst, ok = s.string()
	return ok
}

func (s *scanner) time(u *Usage) bool {
	open, close, ok := s.quoted()
	return ok && u.Time.UnmarshalJSON(s.data[open:close+1]) == nil
}

func (s *scanner) int(dst *int64) (ok bool) {
	*dst, ok = s.integer()
	return ok
}

func (s *scanner) integer() (int64, bool) {
	s.space()
	neg := s.pos < len(s.text) && s.text[s.pos] == '-'
	if neg {
		s.pos++
	}
	start := s.pos
	var n int64
	for ; s.pos < len(s.text) && '0' <= s.text[s.pos] && s.text[s.pos] <= '9'; s.pos++ {
		n = n*10 + int64(s.text[s.pos]-'0')
	}
	// 18 digits always fit in an int64; "-0" and leading zeros are left to the general decoder.
	digits := s.pos - start
	if digits == 0 || digits > 18 || s.text[start] == '0' && (digits > 1 || neg) {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func (s *scanner) bool(dst *bool) bool {
	s.space()
	switch rest := s.text[s.pos:]; {
	case strings.HasPrefix(rest, "true"):
		*dst, s.pos = true, s.pos+len("true")
	case strings.HasPrefix(rest, "false"):
		*dst, s.pos = false, s.pos+len("false")
	default:
		return false
	}
	return true
}

func (s *scanner) tokens(t *Tokens) bool {
	var seen uint32
	return s.object(func(key string) bool {
		var bit uint32
		var dst *int64
		switch key {
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

// scanMap reads an object into a new map, value reading each member's value. Like checkShape
// it refuses objects of maxWidth members or more, duplicates counted: to the general decoder,
// whose checkShape says so.
func scanMap[M ~map[string]V, V any](s *scanner, dst *M, value func() (V, bool)) bool {
	m := make(M)
	*dst = m
	members := 0
	return s.object(func(key string) bool {
		if members++; members >= maxWidth {
			return false
		}
		v, ok := value()
		if ok {
			m[key] = v
		}
		return ok
	})
}
