package otlp_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
)

// emptySpans is an ExportTraceServiceRequest in protobuf holding one resource span, one scope
// span and n empty spans (2 bytes each).
func emptySpans(n int) []byte {
	spans := bytes.Repeat([]byte{0x12, 0x00}, n) // ScopeSpans.spans = 2, length 0
	scope := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), spans)
	resource := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), scope)
	return resource // ExportTraceServiceRequest.resource_spans = 1, holding ResourceSpans.scope_spans = 2
}

func gzipped(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// allocated is the bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The attack of issue 13: a small gzip body of 4 million empty spans (8 MB once
// decompressed, under the 16 MiB body limit) used to be decoded span by span — 1.7 GB of
// peak RSS and 3.5 s — and answered 200. It is refused while it is counted, before any span
// is built, and nothing is stored.
func TestManyEmptySpansRefusedBeforeDecoding(t *testing.T) {
	srv, js := collector(t)
	const n = 4_000_000
	protoBody := gzipped(t, emptySpans(n))
	jsonBody := gzipped(t, []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{}`+strings.Repeat(`,{}`, n-1)+`]}]}]}`))
	t.Logf("bodies: protobuf %d bytes, JSON %d bytes (gzip)", len(protoBody), len(jsonBody))
	for _, c := range []struct {
		contentType string
		body        []byte
	}{{"application/x-protobuf", protoBody}, {"application/json", jsonBody}} {
		var status int
		var data []byte
		alloc := allocated(func() {
			resp, body := post(t, srv.URL+"/v1/traces", c.contentType, c.body, "Content-Encoding", "gzip")
			status, data = resp.StatusCode, body
		})
		var st statusMsg
		st.decode(t, c.contentType, data)
		const want = "request too large: it holds more than 100000 spans, the limit per request; send smaller batches"
		if status != 413 || st.GetMessage() != want || st.GetCode() != 8 {
			t.Errorf("%s: status %d, code %d, message %q; want 413, 8, %q", c.contentType, status, st.GetCode(), st.GetMessage(), want)
		}
		// Reading and decompressing the body (12 MB of JSON at most) is all it costs; decoded,
		// the spans took gigabytes.
		if alloc > 64<<20 {
			t.Errorf("%s: %d MiB allocated while answering, want at most 64 MiB", c.contentType, alloc>>20)
		}
		t.Logf("%s: %d MiB allocated while answering", c.contentType, alloc>>20)
	}
	if got := len(streamtest.Messages(t, js, stream.Raw)); got != 0 {
		t.Errorf("%d messages stored, want none", got)
	}
}

// Messages of every kind count: a span of 2 million empty attributes is refused as well.
func TestManyEmptyMessagesRefused(t *testing.T) {
	srv, js := collector(t)
	attrs := bytes.Repeat([]byte{0x4a, 0x00}, 2_000_000) // Span.attributes = 9, length 0
	span := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), attrs)
	scope := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), span)
	body := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), scope)
	resp, data := post(t, srv.URL+"/v1/traces", "application/x-protobuf", gzipped(t, body), "Content-Encoding", "gzip")
	var st statusMsg
	st.decode(t, "application/x-protobuf", data)
	const want = "request too large: it holds more than 1000000 messages (spans, attributes, events, links, values), the limit per request; send smaller batches"
	if resp.StatusCode != 413 || st.GetMessage() != want {
		t.Errorf("status %d, message %q; want 413, %q", resp.StatusCode, st.GetMessage(), want)
	}
	if got := len(streamtest.Messages(t, js, stream.Raw)); got != 0 {
		t.Errorf("%d messages stored, want none", got)
	}
}

type statusMsg struct{ status.Status }

func (s *statusMsg) decode(tb testing.TB, contentType string, data []byte) {
	tb.Helper()
	var err error
	if contentType == "application/json" {
		err = protojson.Unmarshal(data, &s.Status)
	} else {
		err = proto.Unmarshal(data, &s.Status)
	}
	if err != nil {
		tb.Fatalf("decode the Status %q: %v", clip(data), err)
	}
}

// A tokenmeter.* attribute holding an invisible or direction-changing character is dropped,
// as any tag that breaks the v1 rules is; the span still becomes an event.
func TestInvisibleAttributeDropped(t *testing.T) {
	srv, js := collector(t)
	end := time.Now().Add(-time.Second)
	body := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"tokenmeter.team","value":{"stringValue":"sea\u200brch"}}]},
"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[
{"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.response.model","value":{"stringValue":"gpt-4o"}},
{"key":"tokenmeter.feature","value":{"stringValue":"\u202echat"}},{"key":"tokenmeter.workflow_id","value":{"stringValue":"w\ufeff1"}},
{"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"3"}}]}]}]}]}`,
		end.Add(-time.Second).UnixNano(), end.UnixNano())
	resp, data := post(t, srv.URL+"/v1/traces", "application/json", []byte(body))
	if resp.StatusCode != 200 || string(data) != "{}" {
		t.Fatalf("%d %s, want 200 {}", resp.StatusCode, data)
	}
	if r := rows(t, js, 1)[0]; r.Team != "" || r.Feature != "" || r.WorkflowID != "" {
		t.Errorf("team %q, feature %q, workflow_id %q; want all dropped", r.Team, r.Feature, r.WorkflowID)
	}
}
