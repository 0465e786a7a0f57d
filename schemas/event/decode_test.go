package event

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	good1 = `{"id":"e1","time":"2026-11-26T22:40:00.123Z","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":5}}`
	good2 = `{"id":"e2","provider":"anthropic","model":"claude-sonnet-4","usage":{"input_tokens":20,"output_tokens":1},"tags":{"team":"search"}}`
)

// The events good1 and good2 decode to at now.
var (
	want1 = Usage{ID: "e1", Time: time.Date(2026, 11, 26, 22, 40, 0, 123_000_000, time.UTC), Provider: "openai",
		Model: "gpt-4o", Usage: Tokens{Input: 10, Output: 5}, ServiceTier: TierStandard, Status: StatusOK}
	want2 = Usage{ID: "e2", Time: now, Provider: "anthropic", Model: "claude-sonnet-4",
		Usage: Tokens{Input: 20, Output: 1}, ServiceTier: TierStandard, Status: StatusOK,
		Tags: map[string]string{TagTeam: "search"}}
)

// ce wraps data in a structured CloudEvent with the given attributes.
func ce(id, t, data string) string {
	s := `{"specversion":"1.0","type":"ai.usage.v1","source":"/billing","id":"` + id + `"`
	if t != "" {
		s += `,"time":"` + t + `"`
	}
	return s + `,"datacontenttype":"application/json","data":` + data + `}`
}

func tagsJSON(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"k%02d":"v"`, i)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func ids(events []Usage) []string {
	out := []string{}
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

func TestDecode(t *testing.T) {
	const ndjson = ContentNDJSON
	for _, tc := range []struct {
		name, body, contentType string
		maxEvents               int // 0 means 100
		wantIDs                 []string
		wantRejected            []Rejection
		wantErr                 error  // checked with errors.Is
		wantErrMsg              string // the error's exact text, when wantErr is set
	}{
		{name: "array", body: "[" + good1 + "," + good2 + "]", contentType: ContentJSON, wantIDs: []string{"e1", "e2"}},
		{name: "array without content type", body: " \n[" + good1 + "]\n", wantIDs: []string{"e1"}},
		{name: "array, content type with parameters", body: "[" + good1 + "]", contentType: "application/json; charset=utf-8", wantIDs: []string{"e1"}},
		{name: "content type in upper case", body: "[" + good1 + "]", contentType: "Application/JSON", wantIDs: []string{"e1"}},
		{name: "content type with a broken parameter", body: "[" + good1 + "]", contentType: "application/json; charset", wantIDs: []string{"e1"}},
		{name: "text/plain", body: good1 + "\n" + good2, contentType: "text/plain", wantIDs: []string{"e1", "e2"}},
		{name: "ndjson", body: good1 + "\n" + good2 + "\n", contentType: ndjson, wantIDs: []string{"e1", "e2"}},
		{name: "ndjson as application/json", body: good1 + "\n" + good2, contentType: ContentJSON, wantIDs: []string{"e1", "e2"}},
		{name: "ndjson jsonl", body: good1 + "\n" + good2, contentType: "application/jsonl", wantIDs: []string{"e1", "e2"}},
		{name: "ndjson with CRLF and blank lines", body: "\r\n" + good1 + "\r\n\r\n   \r\n\t\r\n" + good2 + "\r\n\r\n", contentType: ndjson, wantIDs: []string{"e1", "e2"}},
		{name: "single object", body: good1, contentType: ContentJSON, wantIDs: []string{"e1"}},
		{name: "single pretty-printed object", contentType: ContentJSON, wantIDs: []string{"e1"},
			body: "{\n  \"id\": \"e1\",\n  \"time\": \"2026-11-26T22:40:00.123Z\",\n  \"provider\": \"openai\",\n  \"model\": \"gpt-4o\",\n  \"usage\": {\"input_tokens\": 10, \"output_tokens\": 5}\n}\n"},
		{name: "unknown fields are accepted", contentType: ContentJSON, wantIDs: []string{"e3"},
			body: `[{"id":"e3","provider":"p","model":"m","usage":{"input_tokens":1,"output_tokens":1,"audio_tokens":9},"extra":{"nested":[1,2,null]},"v2_field":true}]`},

		// Mixed batches: every bad element rejects only itself.
		{name: "array, mixed", contentType: ContentJSON, wantIDs: []string{"e1", "e2"},
			body: "[" + good1 + `,
				{"id":"neg","provider":"p","model":"m","usage":{"input_tokens":-3,"output_tokens":1}},
				42,
				{"id":"str","provider":"p","model":"m","usage":{"input_tokens":"12","output_tokens":1}},
				{"id":"frac","provider":"p","model":"m","usage":{"input_tokens":1.5,"output_tokens":1}},
				null,` + good2 + `,
				{"id":"future","time":"2030-01-01T00:00:00Z","provider":"p","model":"m","usage":{}},
				{"id":"big","provider":"p","model":"` + strings.Repeat("m", 257) + `","usage":{}},
				{"id":"tags","provider":"p","model":"m","usage":{},"tags":` + tagsJSON(33) + `},
				{"id":"` + strings.Repeat("x", 200) + `","provider":"p","model":"m","usage":{}},
				{"id":"badtime","time":"yesterday","provider":"p","model":"m"}]`,
			wantRejected: []Rejection{
				{Index: 1, ID: "neg", Error: "usage.input_tokens: -3 is negative"},
				{Index: 2, Error: "not a JSON event object: invalid character '4' looking for beginning of value"},
				{Index: 3, ID: "str", Error: `not a usage event: json: cannot unmarshal number " into Go struct field Tokens.Input of type int64`},
				{Index: 4, ID: "frac", Error: "not a usage event: expected comma after object element"},
				{Index: 5, Error: "id: is required"},
				{Index: 7, ID: "future", Error: "time: 2030-01-01T00:00:00Z is more than 5m0s ahead of the receiver's clock (2026-11-26T22:41:31Z)"},
				{Index: 8, ID: "big", Error: "model: is 257 bytes long, more than the limit of 256"},
				{Index: 9, ID: "tags", Error: "tags: 33 tags exceed the limit of 32"},
				{Index: 10, ID: strings.Repeat("x", 64) + "…", Error: "id: is 200 bytes long, more than the limit of 128"},
				{Index: 11, ID: "badtime", Error: `not a usage event: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
			}},
		{name: "array, every element bad", body: `[{}, 1]`, contentType: ContentJSON, wantIDs: []string{},
			wantRejected: []Rejection{
				{Index: 0, Error: "id: is required"},
				{Index: 1, Error: "not a JSON event object: invalid character '1' looking for beginning of value"},
			}},
		{name: "ndjson, mixed; blank lines are not counted", contentType: ndjson, wantIDs: []string{"e1", "e2"},
			body: good1 + "\ngarbage\n\n" + `{"id":"neg","provider":"p","model":"m","usage":{"input_tokens":-3}}` + "\r\n" + good2,
			wantRejected: []Rejection{
				{Index: 1, Error: "not a JSON event object: invalid character 'g' looking for beginning of value"},
				{Index: 2, ID: "neg", Error: "usage.input_tokens: -3 is negative"},
			}},
		{name: "ndjson, one valid line among garbage", contentType: ndjson, wantIDs: []string{"e2"},
			body: "garbage\n{\"id\":\n" + good2,
			wantRejected: []Rejection{
				{Index: 0, Error: "not a JSON event object: invalid character 'g' looking for beginning of value"},
				// goccy/go-json reports the end of its NUL-terminated copy of the input.
				{Index: 1, Error: "not a JSON event object: invalid character '\x00' looking for beginning of value"},
			}},
		{name: "ndjson, one readable but invalid line", body: `{"id":"x"}`, contentType: ndjson, wantIDs: []string{},
			wantRejected: []Rejection{{Index: 0, ID: "x", Error: "provider: is required"}}},
		{name: "ndjson, one line with a wrongly typed field", contentType: ndjson, wantIDs: []string{},
			body:         `{"id":"str","provider":"p","model":"m","usage":{"input_tokens":"12"}}` + "\n",
			wantRejected: []Rejection{{Index: 0, ID: "str", Error: `not a usage event: json: cannot unmarshal number " into Go struct field Tokens.Input of type int64`}}},

		// CloudEvents.
		{name: "cloudevent takes id and time from the envelope", contentType: ContentCloudEvent, wantIDs: []string{"ce-1"},
			body: ce("ce-1", "2026-11-26T22:39:00Z", `{"provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1}}`)},
		{name: "cloudevent, data's own id wins", contentType: ContentCloudEvent, wantIDs: []string{"e1"},
			body: ce("ce-1", "2026-11-26T22:39:00Z", good1)},
		{name: "cloudevent with parameters", contentType: "application/cloudevents+json; charset=UTF-8", wantIDs: []string{"e1"},
			body: ce("ce-1", "", good1)},
		{name: "cloudevent, wrong specversion", contentType: ContentCloudEvent, wantIDs: []string{},
			body:         strings.Replace(ce("ce-1", "", good1), `"1.0"`, `"0.3"`, 1),
			wantRejected: []Rejection{{Index: 0, ID: "ce-1", Error: `specversion: "0.3" is not 1.0`}}},
		{name: "cloudevent, invalid data", contentType: ContentCloudEvent, wantIDs: []string{},
			body:         ce("ce-1", "", `{"id":"d1","usage":{"input_tokens":"1"}}`),
			wantRejected: []Rejection{{Index: 0, ID: "d1", Error: `data: not a usage event: json: cannot unmarshal number " into Go struct field Tokens.Input of type int64`}}},
		{name: "cloudevent, not JSON", body: "{not json", contentType: ContentCloudEvent, wantErr: ErrUnreadable,
			wantErrMsg: "body holds no readable events: not a JSON CloudEvent object"},
		{name: "cloudevent batch", contentType: ContentCloudEventList, wantIDs: []string{"ce-1", "e2"},
			body: "[" + ce("ce-1", "2026-11-26T22:39:00Z", `{"provider":"p","model":"m","usage":{}}`) + "," +
				strings.Replace(ce("ce-2", "", `{}`), `"1.0"`, `"2.0"`, 1) + "," +
				strings.Replace(ce("ce-3", "", good1), "ai.usage.v1", "com.example.other", 1) + "," +
				strings.Replace(ce("ce-4", "", good1), `"datacontenttype":"application/json"`, `"datacontenttype":"application/xml"`, 1) + "," +
				ce("ce-5", "", `"a string"`) + "," +
				`{"specversion":"1.0","type":"ai.usage.v1","id":"ce-6"},` +
				ce("ce-7", "", `{"provider":"p","model":"m"}`) + "," +
				`{"specversion":1},` +
				`"x",` +
				ce("", "2026-11-26T22:39:00Z", `{"provider":"p","model":"m"}`) + "," +
				ce("ce-8", "", good2) + "]",
			wantRejected: []Rejection{
				{Index: 1, ID: "ce-2", Error: `specversion: "2.0" is not 1.0`},
				{Index: 2, ID: "ce-3", Error: `type: "com.example.other" is not ai.usage.v1`},
				{Index: 3, ID: "ce-4", Error: `datacontenttype: "application/xml" is not application/json`},
				{Index: 4, ID: "ce-5", Error: "data: must be a JSON object holding the usage event"},
				{Index: 5, ID: "ce-6", Error: "data: must be a JSON object holding the usage event"},
				{Index: 6, ID: "ce-7", Error: "time: 2030-01-01T00:00:00Z is more than 5m0s ahead of the receiver's clock (2026-11-26T22:41:31Z)"},
				{Index: 7, Error: "not a CloudEvent object: json: cannot unmarshal number into Go struct field .SpecVersion of type string"},
				{Index: 8, Error: `not a CloudEvent object: invalid character '"' looking for beginning of value`},
				{Index: 9, Error: "id: is required"},
			}},

		// Bodies that hold nothing readable, or too much.
		{name: "empty body", body: "", wantErr: ErrUnreadable, wantErrMsg: "body holds no readable events: the body is empty"},
		{name: "blank body", body: " \r\n\t\n", contentType: ndjson, wantErr: ErrUnreadable, wantErrMsg: "body holds no readable events: the body is empty"},
		{name: "empty array", body: "[]", wantErr: ErrUnreadable, wantErrMsg: "body holds no readable events: the array is empty"},
		{name: "empty cloudevents batch", body: "[ ]", contentType: ContentCloudEventList, wantErr: ErrUnreadable, wantErrMsg: "body holds no readable events: the array is empty"},
		{name: "not JSON", body: "hello, world", wantErr: ErrUnreadable,
			wantErrMsg: "body holds no readable events: no line is a JSON object (line 0: not a JSON event object: invalid character 'h' looking for beginning of value)"},
		{name: "ndjson, every line garbage", body: "garbage\r\n\r\n{\"id\":\n[1,2]", contentType: ndjson, wantErr: ErrUnreadable,
			wantErrMsg: "body holds no readable events: no line is a JSON object (line 0: not a JSON event object: invalid character 'g' looking for beginning of value)"},
		{name: "broken array", body: "[" + good1 + ",", wantErr: ErrUnreadable},
		{name: "unsupported content type", body: "[" + good1 + "]", contentType: "text/xml", wantErr: ErrUnreadable,
			wantErrMsg: `body holds no readable events: content type "text/xml" is not one of application/json, application/x-ndjson, application/cloudevents+json, application/cloudevents-batch+json`},
		{name: "unparsable content type", body: "[" + good1 + "]", contentType: "/;", wantErr: ErrUnreadable,
			wantErrMsg: `body holds no readable events: content type "/;": mime: no media type`},
		{name: "array over the limit", body: "[" + good1 + "," + good2 + ",{}]", maxEvents: 2, wantErr: ErrTooManyEvents,
			wantErrMsg: "too many events in one body: 3 events, the limit is 2"},
		{name: "array at the limit", body: "[" + good1 + "," + good2 + "]", maxEvents: 2, wantIDs: []string{"e1", "e2"}},
		{name: "ndjson over the limit", body: good1 + "\n" + good2 + "\n{}", contentType: ndjson, maxEvents: 2, wantErr: ErrTooManyEvents,
			wantErrMsg: "too many events in one body: 3 lines, the limit is 2"},
		{name: "ndjson at the limit", body: good1 + "\n" + good2 + "\n", contentType: ndjson, maxEvents: 2, wantIDs: []string{"e1", "e2"}},
		{name: "cloudevents batch over the limit", body: "[" + ce("a", "", good1) + "," + ce("b", "", good2) + "]",
			contentType: ContentCloudEventList, maxEvents: 1, wantErr: ErrTooManyEvents,
			wantErrMsg: "too many events in one body: 2 events, the limit is 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.maxEvents
			if max == 0 {
				max = 100
			}
			// ce-7 carries a far-future time in its envelope: patch it in here to keep the
			// table readable.
			body := strings.Replace(tc.body, `"id":"ce-7"`, `"id":"ce-7","time":"2030-01-01T00:00:00Z"`, 1)
			b, err := Decode([]byte(body), tc.contentType, now, DefaultLimits, max)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Decode() error = %v, want %v", err, tc.wantErr)
				}
				if tc.wantErrMsg != "" && err.Error() != tc.wantErrMsg {
					t.Fatalf("Decode() error = %q\nwant                 %q", err, tc.wantErrMsg)
				}
				if b.Events != nil || b.Rejected != nil {
					t.Fatalf("Decode() = %+v with an error, want an empty batch", b)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if got := ids(b.Events); !reflect.DeepEqual(got, tc.wantIDs) {
				t.Errorf("event ids = %q, want %q", got, tc.wantIDs)
			}
			if !reflect.DeepEqual(b.Rejected, tc.wantRejected) {
				t.Errorf("Rejected =\n%s\nwant\n%s", fmtRejected(b.Rejected), fmtRejected(tc.wantRejected))
			}
		})
	}
}

func fmtRejected(rs []Rejection) string {
	var sb strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&sb, "\t{%d %q %q}\n", r.Index, r.ID, r.Error)
	}
	return sb.String()
}

// TestDecodeEvents checks the decoded events field by field, defaults included.
func TestDecodeEvents(t *testing.T) {
	check := func(t *testing.T, body, contentType string, want ...Usage) {
		t.Helper()
		b, err := Decode([]byte(body), contentType, now, DefaultLimits, 100)
		if err != nil {
			t.Fatalf("Decode() error = %v", err)
		}
		if len(b.Rejected) != 0 {
			t.Fatalf("Rejected = %+v, want none", b.Rejected)
		}
		if !reflect.DeepEqual(b.Events, want) {
			t.Fatalf("Events =\n%+v\nwant\n%+v", b.Events, want)
		}
	}
	t.Run("array", func(t *testing.T) { check(t, "["+good1+","+good2+"]", ContentJSON, want1, want2) })
	t.Run("ndjson", func(t *testing.T) { check(t, good1+"\r\n"+good2, ContentNDJSON, want1, want2) })
	t.Run("every field", func(t *testing.T) {
		body := `{"id":"evt_01JDXYZ","time":"2026-11-26T23:41:31.1239+01:00","provider":"openai","model":"gpt-4o-2024-08-06",
			"operation":"chat","usage":{"input_tokens":1200,"output_tokens":300,"cached_input_tokens":1000,"cache_write_tokens":100,
			"cache_write_1h_tokens":50,"reasoning_tokens":20},"service_tier":"priority","response_id":"chatcmpl-B9MBs8",
			"status":"rate_limited","latency_ms":850,"tags":{"team":"search","feature":"summarize","env":"prod",
			"cost_center":"cc-42","traffic":"user","région":"x"},"workflow_id":"ticket-4711","prompt_version":"summarize@v7","cache_hit":true}`
		b, err := Decode([]byte(body), ContentJSON, now, DefaultLimits, 100)
		if err != nil {
			t.Fatal(err)
		}
		// "région" is not a valid tag key, so the event is rejected as a whole.
		want := []Rejection{{Index: 0, ID: "evt_01JDXYZ", Error: `tags: key "région" may only contain a-z, 0-9, '_', '.' and '-'`}}
		if !reflect.DeepEqual(b.Rejected, want) {
			t.Fatalf("Rejected = %+v, want %+v", b.Rejected, want)
		}
		check(t, strings.Replace(body, "région", "region", 1), ContentJSON, Usage{
			ID: "evt_01JDXYZ", Time: time.Date(2026, 11, 26, 22, 41, 31, 123_000_000, time.UTC),
			Provider: "openai", Model: "gpt-4o-2024-08-06", Operation: "chat",
			Usage:       Tokens{Input: 1200, Output: 300, CachedInput: 1000, CacheWrite: 100, CacheWrite1h: 50, Reasoning: 20},
			ServiceTier: TierPriority, ResponseID: "chatcmpl-B9MBs8", Status: "rate_limited", LatencyMS: 850,
			Tags: map[string]string{"team": "search", "feature": "summarize", "env": "prod", "cost_center": "cc-42",
				"traffic": "user", "region": "x"},
			WorkflowID: "ticket-4711", PromptVersion: "summarize@v7", CacheHit: true,
		})
	})
	t.Run("cloudevent envelope id and time", func(t *testing.T) {
		w := want2
		w.ID, w.Time = "ce-9", time.Date(2026, 11, 26, 22, 39, 0, 0, time.UTC)
		check(t, ce("ce-9", "2026-11-26T22:39:00Z", strings.Replace(good2, `"id":"e2",`, "", 1)), ContentCloudEvent, w)
	})
	t.Run("cloudevent without time gets the receive time", func(t *testing.T) {
		w := want2
		w.ID = "ce-9"
		check(t, "["+ce("ce-9", "", strings.Replace(good2, `"id":"e2",`, "", 1))+"]", ContentCloudEventList, w)
	})
}

// BenchmarkDecodeNDJSON measures the collector's hot path: one body of 1,000 events.
func BenchmarkDecodeNDJSON(b *testing.B) {
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, `{"id":"evt_%06d","time":"2026-11-26T22:40:00.123Z","provider":"openai","model":"gpt-4o-2024-08-06","operation":"chat",`+
			`"usage":{"input_tokens":1200,"output_tokens":300,"cached_input_tokens":1000},"response_id":"chatcmpl-%06d","latency_ms":850,`+
			`"tags":{"team":"search","feature":"summarize","env":"prod","traffic":"user"}}`+"\n", i, i)
	}
	body := []byte(sb.String())
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		out, err := Decode(body, ContentNDJSON, now, DefaultLimits, 10_000)
		if err != nil || len(out.Events) != 1000 {
			b.Fatalf("Decode() = %d events, %v", len(out.Events), err)
		}
	}
}

// BenchmarkCheckShape measures the scan that bounds nesting and widths before decoding, over
// the body of BenchmarkDecodeNDJSON.
func BenchmarkCheckShape(b *testing.B) {
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, `{"id":"evt_%06d","time":"2026-11-26T22:40:00.123Z","provider":"openai","model":"gpt-4o-2024-08-06","operation":"chat",`+
			`"usage":{"input_tokens":1200,"output_tokens":300,"cached_input_tokens":1000},"response_id":"chatcmpl-%06d","latency_ms":850,`+
			`"tags":{"team":"search","feature":"summarize","env":"prod","traffic":"user"}}`+"\n", i, i)
	}
	body := []byte(sb.String())
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := checkShape(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestScanEvent pins which events take the fast path: the shape every honest sender writes
// does, anything scanEvent cannot decode exactly as goccy/go-json does is left to it.
func TestScanEvent(t *testing.T) {
	f := func(in string, want bool) {
		t.Helper()
		var u Usage
		if got := scanEvent(&u, []byte(in), new(strs), nil); got != want {
			t.Errorf("scanEvent(%s) = %t, want %t", in, got, want)
		}
	}
	f(good1, true)
	f(good2, true)
	f(` { "id" : "a" , "usage" : { "input_tokens" : 0 } , "cache_hit" : false } `, true)
	f(`{"id":"a","units":{"requests":1},"tags":{},"estimated":true,"estimate_reason":"no_usage"}`, true)
	f(`{"id":"é"}`, true)
	f(`{"id":"a\"b"}`, false) // an escape
	f(`{"ID":"a"}`, false)    // goccy/go-json matches keys regardless of case
	f(`{"id":"a","id":"b"}`, false)
	f(`{"extra":1}`, false) // an unknown key
	f(`{"id":null}`, false)
	f(`{"latency_ms":1.5}`, false)
	f(`{"latency_ms":0012}`, false)
	f(`{"latency_ms":1234567890123456789}`, false)
	f(`{"time":"2026-11-26"}`, false)
	f(`{"id":"a"} {}`, false)
	f(`{"id":"a"`, false)
}

// TestDecoder checks that a Decoder decodes each body as Decode does, whatever it decoded
// before, and that after Recycle the next body is decoded into the earlier one's events
// array and maps, emptied.
func TestDecoder(t *testing.T) {
	first := []byte(`{"id":"a","provider":"p","model":"m","tags":{"team":"old","feature":"old","extra":"old"},"units":{"requests":1}}` + "\n" +
		`{"id":"b","provider":"p","model":"m","usage":{"input_tokens":-1},"tags":{"team":"rejected"}}` + "\n" + good2 + "\n" + good1)
	second := []byte(good1 + "\n" + `{"id":"e3","provider":"p","model":"m","usage":{"input_tokens":-1}}` + "\n" + good2 + "\n")
	var d Decoder
	for i, body := range [][]byte{first, second, []byte("garbage"), second, first} {
		want, wantErr := Decode(body, ContentNDJSON, now, DefaultLimits, 10)
		before := d.events[:cap(d.events)]
		got, err := d.Decode(body, ContentNDJSON, now, DefaultLimits, 10)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("body %d: Decode() = %+v, %v; want %+v, %v", i, got, err, want, wantErr)
		}
		if len(before) >= len(got.Events) && len(got.Events) > 0 && &got.Events[0] != &before[0] {
			t.Errorf("body %d: the events are not in the array of the ones before", i)
		}
		d.Recycle()
	}
	// The first body made three tags maps (the rejected event's too); the second body's one
	// event with tags (good2) takes one of them, emptied.
	got, err := d.Decode(second, ContentNDJSON, now, DefaultLimits, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.maps.tags.free) != 2 || len(d.maps.tags.out) != 1 {
		t.Errorf("tags maps: %d free, %d out; want 2 free, 1 out", len(d.maps.tags.free), len(d.maps.tags.out))
	}
	if got.Events[1].Tags["team"] != "search" || len(got.Events[1].Tags) != 1 {
		t.Errorf("a recycled map holds %v, want only team=search", got.Events[1].Tags)
	}
	// Without Recycle, the next batch leaves this one's events alone.
	want := slices.Clone(got.Events)
	if _, err := d.Decode(first, ContentNDJSON, now, DefaultLimits, 10); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Events, want) {
		t.Errorf("a batch not recycled was overwritten: %+v, want %+v", got.Events, want)
	}
}
