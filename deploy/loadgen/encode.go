package loadgen

import (
	"slices"
	"strconv"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// appendEvent appends the JSON of u exactly as encoding/json (and goccy/go-json) would write
// it for generator-made values: the fields of event.Usage in declaration order, the same
// omitempty rules, tags sorted by key. It exists because the generator must outrun the
// pipeline it loads: goccy/go-json's Marshal takes three times as long and allocates (see
// BenchmarkEncode: 1.1µs and 3 allocations against 0.36µs and none), and
// TestEncodeMatchesGoccy pins the bytes to the library's.
func appendEvent(b []byte, u *event.Usage) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, u.ID)
	b = append(b, `,"time":"`...)
	b = u.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","provider":`...)
	b = appendString(b, u.Provider)
	b = append(b, `,"model":`...)
	b = appendString(b, u.Model)
	b = appendOptString(b, "operation", u.Operation)

	t := &u.Usage
	b = append(b, `,"usage":{"input_tokens":`...)
	b = strconv.AppendInt(b, t.Input, 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, t.Output, 10)
	b = appendOptInt(b, "cached_input_tokens", t.CachedInput)
	b = appendOptInt(b, "cache_write_tokens", t.CacheWrite)
	b = appendOptInt(b, "cache_write_1h_tokens", t.CacheWrite1h)
	b = appendOptInt(b, "reasoning_tokens", t.Reasoning)
	b = append(b, '}')

	b = appendOptString(b, "service_tier", u.ServiceTier)
	b = appendOptString(b, "response_id", u.ResponseID)
	b = appendOptString(b, "status", u.Status)
	b = appendOptInt(b, "latency_ms", u.LatencyMS)
	if len(u.Tags) > 0 {
		var buf [8]string
		keys := buf[:0]
		for k := range u.Tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"tags":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, u.Tags[k])
		}
		b = append(b, '}')
	}
	b = appendOptString(b, "workflow_id", u.WorkflowID)
	b = appendOptString(b, "prompt_version", u.PromptVersion)
	if u.CacheHit {
		b = append(b, `,"cache_hit":true`...)
	}
	return append(b, '}')
}

func appendOptString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendOptInt(b []byte, key string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// appendString writes a JSON string, escaping like encoding/json. The generator only makes
// ASCII without '<', '>' or '&' (which encoding/json would also escape), so quotes,
// backslashes and control characters are all that needs escaping.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	if !needsEscape(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return true
		}
	}
	return false
}

// NDJSON joins the items' JSON one per line, in order, as a body for the collector.
func NDJSON(items []Item) []byte {
	n := 0
	for i := range items {
		n += len(items[i].JSON) + 1
	}
	b := make([]byte, 0, n)
	for i := range items {
		b = append(b, items[i].JSON...)
		b = append(b, '\n')
	}
	return b
}

// JSONArray joins the items' JSON into one JSON array, in order. Every item, invalid ones
// included, is well-formed JSON, so the array always parses and each element is judged alone.
func JSONArray(items []Item) []byte {
	n := 2
	for i := range items {
		n += len(items[i].JSON) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, items[i].JSON...)
	}
	return append(b, ']')
}
