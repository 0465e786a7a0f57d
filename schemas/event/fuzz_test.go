package event

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"mime"
	"reflect"
	"testing"

	json "github.com/goccy/go-json"
)

// FuzzDecode checks Decode's contract on arbitrary bodies: it never panics; on success every
// element of the body is either accepted or rejected, exactly once and in body order; every
// accepted event is normalized and valid; on failure the error is one of the documented
// sentinels and the batch is empty.
func FuzzDecode(f *testing.F) {
	for _, s := range []struct{ body, contentType string }{
		{"[" + good1 + "," + good2 + "]", ContentJSON},
		{good1 + "\r\n\r\n" + good2 + "\n", ContentNDJSON},
		{good1 + "\ngarbage\n{}", "application/x-ndjson; charset=utf-8"},
		{"{\n \"id\": \"e1\", \"provider\": \"p\",\n \"model\": \"m\"}", ContentJSON},
		{ce("ce-1", "2026-11-26T22:39:00Z", `{"provider":"p","model":"m","usage":{"input_tokens":1}}`), ContentCloudEvent},
		{"[" + ce("ce-1", "", good1) + `,{"specversion":"0.3"},1]`, ContentCloudEventList},
		{`[{"id":"a","provider":"p","model":"m","usage":{"input_tokens":"12","output_tokens":1.5}},null,{"tags":{"A":"\u0000"}}]`, ""},
		{`[{"id":"a","provider":"p","model":"m","time":"9999-12-31T23:59:59Z","usage":{"input_tokens":-1,"cached_input_tokens":9223372036854775807}}]`, "text/plain"},
		{"", ContentJSON},
		{"[]", ContentJSON},
		{"not json", "text/xml"},
		// Invisible and direction-changing characters, which Validate refuses.
		{`{"id":"a\u200b","provider":"p","model":"m","tags":{"team":"\u202esearch"}}` + "\n" + `{"id":"b","provider":"p","model":"m","tags":{"team":"se\u00adarch"}}`, ContentNDJSON},
		{"[{\"id\":\"c\",\"provider\":\"p\",\"model\":\"m\",\"tags\":{\"team\":\"\xef\xbb\xbfsearch\",\"env\":\"\xc2\x85\"}}]", ContentJSON},
		{`{"id":"d","provider":"p\u2066","model":"m\ufe0f","tags":{"team":"\udb40\udc41"}}`, ContentJSON},
		// Units: valid, zero (dropped), unknown, negative, audio beyond its token class.
		{`{"id":"u","provider":"p","model":"m","usage":{"input_tokens":9,"output_tokens":9},"units":{"audio_input_tokens":9,"image_outputs:1024x1024:high":2,"requests":0}}`, ContentJSON},
		{`[{"id":"v","provider":"p","model":"m","units":{"web_searches":1}},{"id":"w","provider":"p","model":"m","units":{"requests":-1,"audio_output_tokens":1}},{"id":"x","provider":"p","model":"m","units":{"image_outputs::":1e3}}]`, ContentJSON},
	} {
		f.Add([]byte(s.body), s.contentType)
	}
	const maxEvents = 50
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		b, err := Decode(body, contentType, now, DefaultLimits, maxEvents)
		if err != nil {
			if !errors.Is(err, ErrUnreadable) && !errors.Is(err, ErrTooManyEvents) {
				t.Fatalf("Decode() error = %v, want ErrUnreadable or ErrTooManyEvents", err)
			}
			if b.Events != nil || b.Rejected != nil {
				t.Fatalf("Decode() = %+v with error %v, want an empty batch", b, err)
			}
			return
		}
		n := elements(t, body, contentType)
		if got := len(b.Events) + len(b.Rejected); got != n {
			t.Fatalf("%d events + %d rejections, want %d elements (rejected: %+v)", len(b.Events), len(b.Rejected), n, b.Rejected)
		}
		for i, r := range b.Rejected {
			if r.Index < 0 || r.Index >= n || i > 0 && r.Index <= b.Rejected[i-1].Index {
				t.Fatalf("rejection %d has index %d: indexes must increase within [0, %d): %+v", i, r.Index, n, b.Rejected)
			}
			if r.Error == "" {
				t.Fatalf("rejection %d has no error", i)
			}
		}
		for i := range b.Events {
			e := b.Events[i]
			if err := e.Validate(now, DefaultLimits); err != nil {
				t.Fatalf("accepted event %d is invalid: %v", i, err)
			}
			for _, v := range append([]string{e.ID, e.Provider, e.Model, e.ResponseID, e.WorkflowID}, tagValues(e.Tags)...) {
				for _, r := range v {
					if Invisible(r) != "" {
						t.Fatalf("accepted event %d holds U+%04X in %q", i, r, v)
					}
				}
			}
			for k, v := range e.Units {
				if _, _, ok := UnitClass(k); !ok || v <= 0 {
					t.Fatalf("accepted event %d holds unit %q = %d", i, k, v)
				}
			}
			normalized := e
			normalized.Normalize(now)
			if !reflect.DeepEqual(normalized, e) {
				t.Fatalf("accepted event %d is not normalized: %+v", i, e)
			}
		}
	})
}

// elements counts the elements of a body that Decode read successfully, from the body's
// shape alone: array elements, one structured CloudEvent or single object, or non-blank lines.
func elements(t testing.TB, body []byte, contentType string) int {
	t.Helper()
	mt := ContentJSON
	if contentType != "" {
		mt, _, _ = mime.ParseMediaType(contentType)
	}
	body = bytes.TrimSpace(body)
	array := func() int {
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("Decode() accepted a body that is not a JSON array: %v", err)
		}
		return len(raw)
	}
	lines := func() int {
		n := 0
		for _, l := range bytes.Split(body, []byte{'\n'}) {
			if len(bytes.TrimSpace(l)) > 0 {
				n++
			}
		}
		return n
	}
	switch mt {
	case ContentJSON, "text/plain":
		switch {
		case body[0] == '[':
			return array()
		case body[0] == '{' && stdjson.Valid(body):
			return 1
		}
		return lines()
	case ContentCloudEvent:
		return 1
	case ContentCloudEventList:
		return array()
	}
	return lines()
}

func tagValues(tags map[string]string) []string {
	var vs []string
	for _, v := range tags {
		vs = append(vs, v)
	}
	return vs
}

// FuzzScanEvent checks scanEvent against the general decoder it stands in for: whatever
// object it accepts, checkShape lets through and goccy/go-json decodes to the same Usage, so
// that the fast path changes no event and no error message.
func FuzzScanEvent(f *testing.F) {
	for _, s := range []string{
		good1, good2, "{}", " { } ",
		`{"id":"evt_00000001","provider":"openai","model":"gpt-4o-2024-08-06","operation":"chat","usage":{"input_tokens":1200,"output_tokens":300,"cached_input_tokens":1000},"service_tier":"standard","response_id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5q0001","status":"ok","latency_ms":850,"tags":{"team":"search","feature":"summarize","env":"prod","cost_center":"cc-42","traffic":"user"},"workflow_id":"ticket-4711","prompt_version":"summarize@v7"}`,
		`{"id":"u","time":"2026-11-26T22:40:00+05:30","provider":"p","model":"m","usage":{"input_tokens":9,"output_tokens":9,"cache_write_tokens":1,"cache_write_1h_tokens":1,"reasoning_tokens":2},"units":{"audio_input_tokens":9,"requests":0},"cache_hit":true,"estimated":false,"estimate_reason":"no_usage"}`,
		`{"id":"a\u200b","provider":"p"}`, `{"ID":"a"}`, `{"id":"a","id":"b"}`, `{"id":null}`, `{"tags":{}}`, `{"units":{}}`,
		`{"tags":{"a":"1","a":"2"}}`, `{"latency_ms":-0}`, `{"latency_ms":007}`, `{"latency_ms":1.5}`, `{"latency_ms":1e3}`,
		`{"latency_ms":-12}`, `{"latency_ms":123456789012345678}`, `{"latency_ms":9223372036854775807}`,
		`{"time":"2026-11-26T24:00:00Z"}`, `{"time":""}`, `{"cache_hit":tru}`, `{"id":"é"}`, "{\"id\":\"\xff\"}",
		`{"id":"a"}x`, `{"id":"a",}`, `{"id" "a"}`, `{"usage":{"input_tokens":1,"input_tokens":2}}`, `{"tags":{"team":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var strs strs
		var maps maps
		var fast Usage
		if !scanEvent(&fast, data, &strs, &maps) {
			return
		}
		if err := checkShape(data); err != nil {
			t.Fatalf("scanEvent accepted %q, which checkShape refuses: %v", data, err)
		}
		var general Usage
		if err := unmarshal(data, &general); err != nil {
			t.Fatalf("scanEvent accepted %q, which goccy/go-json refuses: %v", data, err)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("scanEvent(%q) = %+v, goccy/go-json decodes %+v", data, fast, general)
		}
		// Again with the same strs and its maps recycled: its strings are the first pass's,
		// its maps the first pass's, emptied.
		maps.recycle()
		var again Usage
		if !scanEvent(&again, data, &strs, &maps) || !reflect.DeepEqual(again, general) {
			t.Fatalf("scanEvent(%q) again = %+v, goccy/go-json decodes %+v", data, again, general)
		}
	})
}
