package otlp_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tokenmeter/tokenmeter/collector/collect"
	"github.com/tokenmeter/tokenmeter/collector/otlp"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// collector runs the real collector (POST /v1/traces mounted in its handler) on embedded
// JetStream.
func collector(t *testing.T) (*httptest.Server, jetstream.JetStream) {
	t.Helper()
	ns := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, ns)
	js := streamtest.Streams(t, nc, nil)
	c, err := collect.New(collect.Config{}, nc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv, js
}

// rows returns the n events stored in USAGE_RAW sorted by id, receive time cleared.
func rows(t *testing.T, js jetstream.JetStream, n int) []batch.Row {
	t.Helper()
	var out []batch.Row
	for _, m := range streamtest.Messages(t, js, stream.Raw) {
		out = append(out, m.Rows...)
	}
	if len(out) != n {
		t.Fatalf("%d events stored, want %d", len(out), n)
	}
	for i := range out {
		out[i].Received = time.Time{}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func row(u event.Usage) batch.Row {
	u.Normalize(u.Time)
	r := batch.FromUsage(&u, u.Time, stream.PartitionOf(u.Provider, u.ResponseID, u.ID, stream.DefaultPartitions))
	r.Received = time.Time{}
	return r
}

func post(t *testing.T, url, contentType string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// An OTLP/JSON export as the Python SDK's instrumentations produce it: two GenAI spans
// become events, an HTTP span is ignored, a GenAI span without a model is rejected.
func TestJSONExport(t *testing.T) {
	srv, js := collector(t)
	start1 := time.Now().Add(-2 * time.Minute).UTC().Truncate(time.Millisecond)
	end1 := start1.Add(1850 * time.Millisecond)
	start2 := start1.Add(30 * time.Second)
	end2 := start2.Add(12*time.Second + 400*time.Millisecond)
	fixture, err := os.ReadFile("testdata/genai_traces.json")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.NewReplacer(
		`"START1"`, `"`+strconv.FormatInt(start1.UnixNano(), 10)+`"`, `"END1"`, `"`+strconv.FormatInt(end1.UnixNano(), 10)+`"`,
		`"START2"`, `"`+strconv.FormatInt(start2.UnixNano(), 10)+`"`, `"END2"`, `"`+strconv.FormatInt(end2.UnixNano(), 10)+`"`,
	).Replace(string(fixture))
	resp, data := post(t, srv.URL+"/v1/traces", "application/json", []byte(body))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d (%s): %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	var answer coltracepb.ExportTraceServiceResponse
	if err := protojson.Unmarshal(data, &answer); err != nil {
		t.Fatalf("decode the answer %s: %v", data, err)
	}
	ps := answer.GetPartialSuccess()
	if ps.GetRejectedSpans() != 1 || ps.GetErrorMessage() != "span otel-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203332: model: is required" {
		t.Errorf("partial success = %v", ps)
	}
	want := []batch.Row{
		row(event.Usage{
			ID: "otel-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", Time: end2, Provider: "anthropic",
			Model: "claude-sonnet-4-5-20250929", Operation: "chat", LatencyMS: 12400,
			Usage:      event.Tokens{Input: 16210, Output: 356, CachedInput: 12000, CacheWrite: 4000},
			ResponseID: "msg_01XFDUDYJgAACzvnptvVoYEL", WorkflowID: "lit-review-17",
			Tags: map[string]string{"service": "research-agent", "env": "stage-eu", "cost_center": "cc-9", "team": "research"},
		}),
		row(event.Usage{
			ID: "otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174", Time: end1, Provider: "openai",
			Model: "gpt-4o-mini-2024-07-18", Operation: "chat", LatencyMS: 1850, ServiceTier: "standard",
			Usage:      event.Tokens{Input: 1200, Output: 300, CachedInput: 1024},
			ResponseID: "chatcmpl-AmXq3Yg0yXc3Zg2ZVq5Yq8b6hJr1d",
			Tags:       map[string]string{"service": "support-bot", "env": "prod", "team": "support", "feature": "triage"},
		}),
	}
	if got := rows(t, js, 2); !reflect.DeepEqual(got, want) {
		t.Fatalf("events\n %+v\nwant\n %+v", got, want)
	}
}

// sdkRequest is an export as the Go SDK's otlptracehttp exporter builds it.
func sdkRequest(start, end time.Time, spanID byte) *coltracepb.ExportTraceServiceRequest {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	num := func(k string, v int64) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			str("service.name", "checkout"), str("deployment.environment.name", "prod"), str("tokenmeter.tag.region", "eu-west"),
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "github.com/acme/genai-go"},
			Spans: []*tracepb.Span{{
				TraceId:           []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
				SpanId:            []byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 + spanID},
				Name:              "generate_content gemini-2.5-flash",
				Kind:              tracepb.Span_SPAN_KIND_CLIENT,
				StartTimeUnixNano: uint64(start.UnixNano()),
				EndTimeUnixNano:   uint64(end.UnixNano()),
				Attributes: []*commonpb.KeyValue{
					str("gen_ai.operation.name", "generate_content"), str("gen_ai.provider.name", "gcp.gemini"),
					str("gen_ai.request.model", "gemini-2.5-flash"), str("gen_ai.response.id", "mkQnabPFNMmZ0-kPwaCx6Ak"),
					num("gen_ai.usage.input_tokens", 9120), num("gen_ai.usage.output_tokens", 535),
					num("gen_ai.usage.cache_read.input_tokens", 8192), num("gen_ai.usage.reasoning.output_tokens", 527),
					str("tokenmeter.team", "payments"), str("tokenmeter.traffic", "background"),
				},
			}},
		}},
	}}}
}

func TestProtobufGzipExport(t *testing.T) {
	srv, js := collector(t)
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	end := start.Add(640 * time.Millisecond)
	data, err := proto.Marshal(sdkRequest(start, end, 0))
	if err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(data)
	zw.Close()
	// Sent twice, as an exporter retrying after a lost answer does: counted once downstream
	// because the event id is the span's. The retry comes a moment later, so its message
	// (whose receive time differs) is a second one in USAGE_RAW; a retry within the same
	// millisecond would be the same bytes and stored once.
	for i := 0; i < 2; i++ {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		resp, body := post(t, srv.URL+"/v1/traces", "application/x-protobuf", zipped.Bytes(), "Content-Encoding", "gzip")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Fatalf("status %d: %q", resp.StatusCode, body)
		}
		var answer coltracepb.ExportTraceServiceResponse
		if err := proto.Unmarshal(body, &answer); err != nil || answer.GetPartialSuccess() != nil {
			t.Fatalf("answer %v, %v; want an empty ExportTraceServiceResponse", &answer, err)
		}
	}
	want := row(event.Usage{
		ID: "otel-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", Time: end, Provider: "google", Model: "gemini-2.5-flash",
		Operation: "generate_content", LatencyMS: 640, ResponseID: "mkQnabPFNMmZ0-kPwaCx6Ak",
		Usage: event.Tokens{Input: 9120, Output: 535, CachedInput: 8192, Reasoning: 527},
		Tags:  map[string]string{"service": "checkout", "env": "prod", "region": "eu-west", "team": "payments", "traffic": "background"},
	})
	got := rows(t, js, 2)
	if !reflect.DeepEqual(got[0], want) || !reflect.DeepEqual(got[1], want) {
		t.Fatalf("events\n %+v\nwant twice\n %+v", got, want)
	}
}

func TestBadRequests(t *testing.T) {
	srv, js := collector(t)
	f := func(contentType string, body []byte, header []string, wantStatus int, wantMsg string) {
		t.Helper()
		resp, data := post(t, srv.URL+"/v1/traces", contentType, body, header...)
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %q: status %d, want %d (%s)", contentType, clip(body), resp.StatusCode, wantStatus, data)
		}
		var st status.Status
		if resp.Header.Get("Content-Type") == "application/json" {
			err := protojson.Unmarshal(data, &st)
			if err != nil {
				t.Fatalf("decode Status %s: %v", data, err)
			}
		} else if err := proto.Unmarshal(data, &st); err != nil {
			t.Fatalf("decode Status: %v", err)
		}
		if !strings.Contains(st.GetMessage(), wantMsg) {
			t.Fatalf("%s: message %q, want it to contain %q", contentType, st.GetMessage(), wantMsg)
		}
	}
	f("text/plain", []byte("hello"), nil, 415, `content type "text/plain" is not application/x-protobuf or application/json`)
	f("application/json", []byte(`{"resourceSpans": [`), nil, 400, "decode ExportTraceServiceRequest")
	f("application/json", []byte(`{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}`), nil, 400, "decode ExportTraceServiceRequest")
	f("application/x-protobuf", []byte{0x0a, 0xff, 0xff, 0xff}, nil, 400, "decode ExportTraceServiceRequest")
	f("application/x-protobuf", []byte("not gzip"), []string{"Content-Encoding", "gzip"}, 400, "decompress the gzip body")
	f("application/x-protobuf", []byte{}, []string{"Content-Encoding", "br"}, 415, `content encoding "br" is not gzip`)
	// A gzip bomb: 17 MiB of zeros in a small body.
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 17<<20))
	zw.Close()
	f("application/x-protobuf", bomb.Bytes(), []string{"Content-Encoding", "gzip"}, 413, "the decompressed body is more than the limit of 16777216 bytes")
	f("application/x-protobuf", make([]byte, 16<<20+1), nil, 413, "more than the limit of 16777216")
	// Wrong types and hostile values are rejected span by span.
	resp, data := post(t, srv.URL+"/v1/traces", "application/json", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[
		{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b171","attributes":[
		 {"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
		 {"key":"gen_ai.usage.input_tokens","value":{"stringValue":"lots"}}]},
		{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b172","attributes":[
		 {"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
		 {"key":"gen_ai.usage.input_tokens","value":{"intValue":"-5"}}]},
		{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b173","attributes":[
		 {"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
		 {"key":"gen_ai.usage.input_tokens","value":{"intValue":"5"}},{"key":"gen_ai.usage.cache_read.input_tokens","value":{"intValue":"6"}}]}
	]}]}]}`))
	var answer coltracepb.ExportTraceServiceResponse
	if err := protojson.Unmarshal(data, &answer); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	wantMsg := `span otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b171: gen_ai.usage.input_tokens: "lots" is not an integer; ` +
		`span otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b172: usage.input_tokens: -5 is negative; ` +
		`span otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b173: usage: cached_input_tokens (6) + cache_write_tokens (0) exceed input_tokens (5), which includes them`
	if ps := answer.GetPartialSuccess(); ps.GetRejectedSpans() != 3 || ps.GetErrorMessage() != wantMsg {
		t.Fatalf("partial success %v\nwant message %s", ps, wantMsg)
	}
	// Spans without GenAI usage are ignored: an empty, successful answer.
	resp, data = post(t, srv.URL+"/v1/traces", "application/json", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"GET /","attributes":[{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}}]}]}]}]}`))
	if resp.StatusCode != 200 || string(data) != "{}" {
		t.Fatalf("ignored spans: %d %s", resp.StatusCode, data)
	}
	if n := len(streamtest.Messages(t, js, stream.Raw)); n != 0 {
		t.Fatalf("%d messages stored, want none", n)
	}
}

// When NATS cannot store the events the exporter is told to retry.
func TestUnavailable(t *testing.T) {
	ns := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, ns)
	streamtest.Streams(t, nc, nil)
	c, err := collect.New(collect.Config{PublishTimeout: 200 * time.Millisecond}, nc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	ns.Shutdown()
	// Until the client has seen the server go, a publish fails with another message.
	testkit.Eventually(t, 5*time.Second, "the client sees the server gone", func() bool { return !nc.IsConnected() })
	data, _ := proto.Marshal(sdkRequest(time.Now().Add(-time.Second), time.Now(), 1))
	resp, body := post(t, srv.URL+"/v1/traces", "application/x-protobuf", data)
	var st status.Status
	if err := proto.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || st.GetCode() != 14 || !strings.Contains(st.GetMessage(), "NATS is not connected") {
		t.Fatalf("status %d, Retry-After %q, %v", resp.StatusCode, resp.Header.Get("Retry-After"), &st)
	}
}

func TestNewHandler(t *testing.T) {
	if _, err := otlp.NewHandler(nil, otlp.Config{}); err == nil || err.Error() != "new OTLP handler: the acceptor is nil" {
		t.Errorf("nil acceptor: %v", err)
	}
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
