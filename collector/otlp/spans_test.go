package otlp

import (
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func dbl(k string, v float64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v}}}
}

var (
	traceID = []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	spanIDb = []byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	t0      = time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
)

const wantID = "otel-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"

func oneSpan(res []*commonpb.KeyValue, sp *tracepb.Span) *coltracepb.ExportTraceServiceRequest {
	if sp.TraceId == nil {
		sp.TraceId, sp.SpanId = traceID, spanIDb
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: res},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{sp}}},
	}}}
}

func TestMapping(t *testing.T) {
	f := func(name string, res []*commonpb.KeyValue, sp *tracepb.Span, want event.Usage, wantDropped int) {
		t.Helper()
		b := spans(oneSpan(res, sp), false)
		if len(b.events) != 1 || len(b.rejected) != 0 || b.ignored != 0 {
			t.Fatalf("%s: %d events, rejected %q, %d ignored", name, len(b.events), b.rejected, b.ignored)
		}
		if !reflect.DeepEqual(b.events[0], want) || b.droppedTags != wantDropped {
			t.Fatalf("%s:\n %+v (%d tags dropped)\nwant\n %+v (%d)", name, b.events[0], b.droppedTags, want, wantDropped)
		}
	}
	f("deprecated names, bedrock, error without error.type",
		[]*commonpb.KeyValue{str("deployment.environment", "dev")},
		&tracepb.Span{
			StartTimeUnixNano: uint64(t0.UnixNano()),
			Attributes: []*commonpb.KeyValue{
				str("gen_ai.system", "aws.bedrock"), str("gen_ai.request.model", "anthropic.claude-3-5-haiku-20241022-v1:0"),
				num("gen_ai.usage.prompt_tokens", 40), dbl("gen_ai.usage.completion_tokens", 7),
			},
			Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR},
		},
		event.Usage{ID: wantID, Time: t0, Provider: "bedrock", Model: "anthropic.claude-3-5-haiku-20241022-v1:0", Status: "error",
			Usage: event.Tokens{Input: 40, Output: 7}, Tags: map[string]string{"env": "dev"}}, 0)
	f("current names win; span tags override the resource's; bad tags dropped",
		[]*commonpb.KeyValue{str("service.name", "svc"), str("tokenmeter.team", "a"), str("tokenmeter.tag.x", "1"), num("tokenmeter.feature", 3), str("tokenmeter.nonsense", "z")},
		&tracepb.Span{
			StartTimeUnixNano: uint64(t0.UnixNano()), EndTimeUnixNano: uint64(t0.Add(2500 * time.Millisecond).UnixNano()),
			Attributes: []*commonpb.KeyValue{
				str("gen_ai.provider.name", "Azure.AI.OpenAI"), str("gen_ai.system", "openai"), str("gen_ai.request.model", "gpt-4o"),
				num("gen_ai.usage.input_tokens", 100), num("gen_ai.usage.prompt_tokens", 99), str("gen_ai.usage.output_tokens", " 12 "),
				str("openai.response.service_tier", "priority"), str("tokenmeter.team", "b"), str("tokenmeter.traffic", "robots"),
				str("tokenmeter.prompt_version", "p@2"), str("tokenmeter.workflow_id", "bad\nid"),
			},
		},
		event.Usage{ID: wantID, Time: t0.Add(2500 * time.Millisecond), LatencyMS: 2500, Provider: "azure", Model: "gpt-4o",
			ServiceTier: "priority", PromptVersion: "p@2", Usage: event.Tokens{Input: 100, Output: 12},
			Tags: map[string]string{"service": "svc", "team": "b", "x": "1"}}, 4)
}

// Spans as the Anthropic Go SDK's own instrumentation exports them (cache writes named
// gen_ai.usage.cache_write.input_tokens, split by lifetime in anthropic.* attributes), and
// as older instrumentations did (gen_ai.usage.cache_*_input_tokens).
func TestCacheAttributes(t *testing.T) {
	fixture, err := os.ReadFile("testdata/anthropic_sdk_traces.json")
	if err != nil {
		t.Fatal(err)
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := protojson.Unmarshal(fixture, &req); err != nil {
		t.Fatal(err)
	}
	b := spans(&req, true)
	if len(b.rejected) != 0 || b.ignored != 0 || b.droppedTags != 0 {
		t.Fatalf("rejected %q, %d ignored, %d tags dropped", b.rejected, b.ignored, b.droppedTags)
	}
	at := func(s, ns int64) time.Time { return time.Unix(s, ns).UTC() }
	tags := map[string]string{"service": "claims-triage"}
	want := []event.Usage{
		{ID: "otel-7a1c0e5d2b3f4a6b8c9d0e1f2a3b4c5d-1a2b3c4d5e6f7a81", Time: at(1796248803, 250e6), LatencyMS: 3250,
			Provider: "anthropic", Model: "claude-sonnet-4-5-20250929", Operation: "chat", ResponseID: "msg_01HvP3kTqWc8YbNn2sLdRe7J",
			Usage: event.Tokens{Input: 21437, Output: 512, CachedInput: 12000, CacheWrite: 9000, CacheWrite1h: 3000}, Tags: tags},
		{ID: "otel-7a1c0e5d2b3f4a6b8c9d0e1f2a3b4c5d-1a2b3c4d5e6f7a82", Time: at(1796248804, 900e6), LatencyMS: 900,
			Provider: "anthropic", Model: "claude-haiku-4-5-20251001", Operation: "chat",
			Usage: event.Tokens{Input: 4200, Output: 96, CacheWrite: 4096, CacheWrite1h: 4096}, Tags: tags},
		{ID: "otel-7a1c0e5d2b3f4a6b8c9d0e1f2a3b4c5d-1a2b3c4d5e6f7a83", Time: at(1796248805, 400e6), LatencyMS: 400,
			Provider: "anthropic", Model: "claude-3-5-haiku-20241022",
			Usage: event.Tokens{Input: 3000, Output: 40, CachedInput: 1000, CacheWrite: 1500}, Tags: tags},
	}
	if !reflect.DeepEqual(b.events, want) {
		t.Fatalf("events\n %+v\nwant\n %+v", b.events, want)
	}
	for _, u := range b.events {
		u.Normalize(u.Time)
		if err := u.Validate(u.Time, event.DefaultLimits); err != nil {
			t.Errorf("%s: %v", u.ID, err)
		}
	}
}

// A span carrying a current and an older name for the same count is read by the current one.
func TestCacheAttributePreference(t *testing.T) {
	f := func(name string, attrs []*commonpb.KeyValue, want event.Tokens) {
		t.Helper()
		attrs = append([]*commonpb.KeyValue{str("gen_ai.request.model", "claude-sonnet-4-5"), num("gen_ai.usage.input_tokens", 1000)}, attrs...)
		b := spans(oneSpan(nil, &tracepb.Span{Attributes: attrs}), false)
		if len(b.events) != 1 {
			t.Fatalf("%s: %d events, rejected %q", name, len(b.events), b.rejected)
		}
		if got := b.events[0].Usage; got != want {
			t.Errorf("%s: usage %+v, want %+v", name, got, want)
		}
	}
	f("semantic conventions over the Anthropic SDK's and the older names",
		[]*commonpb.KeyValue{num("gen_ai.usage.cache_creation_input_tokens", 30), num("gen_ai.usage.cache_write.input_tokens", 20),
			num("gen_ai.usage.cache_creation.input_tokens", 10), num("gen_ai.usage.input_tokens.cached", 7),
			num("gen_ai.usage.cache_read_input_tokens", 6), num("gen_ai.usage.cache_read.input_tokens", 5)},
		event.Tokens{Input: 1000, CachedInput: 5, CacheWrite: 10})
	f("the Anthropic SDK's over the older names",
		[]*commonpb.KeyValue{num("gen_ai.usage.input_tokens.cache_write", 30), num("gen_ai.usage.cache_write.input_tokens", 20),
			num("gen_ai.usage.input_tokens.cached", 7)},
		event.Tokens{Input: 1000, CachedInput: 7, CacheWrite: 20})
	f("a total of zero is not a total: the lifetimes sum",
		[]*commonpb.KeyValue{num("gen_ai.usage.cache_write.input_tokens", 0),
			num("anthropic.usage.cache_creation.ephemeral_5m_input_tokens", 40), num("anthropic.usage.cache_creation.ephemeral_1h_input_tokens", 2)},
		event.Tokens{Input: 1000, CacheWrite: 42, CacheWrite1h: 2})
	f("the 5-minute part alone",
		[]*commonpb.KeyValue{num("anthropic.usage.cache_creation.ephemeral_5m_input_tokens", 40)},
		event.Tokens{Input: 1000, CacheWrite: 40})
}

func TestNotUsage(t *testing.T) {
	b := spans(oneSpan(nil, &tracepb.Span{Attributes: []*commonpb.KeyValue{str("gen_ai.request.model", "gpt-4o"), num("gen_ai.usage.cache_read.input_tokens", 3)}}), false)
	if len(b.events) != 0 || b.ignored != 1 {
		t.Fatalf("%+v", b)
	}
}

func TestIntValue(t *testing.T) {
	for _, c := range []struct {
		v       *commonpb.AnyValue
		want    int64
		wantErr string
	}{
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 7}}, 7, ""},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 7}}, 7, ""},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 7.5}}, 0, "7.5 is not an integer"},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.Inf(1)}}, 0, "+Inf is not an integer"},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1e19}}, 0, "1e+19 is not an integer"},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "99999999999999999999"}}, 0, `"99999999999999999999" is not an integer`},
		{&commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}, 0, "AnyValue_BoolValue is not an integer"},
		{nil, 0, "<nil> is not an integer"},
	} {
		got, err := intValue(c.v)
		if got != c.want || (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("intValue(%v) = %d, %v; want %d, %q", c.v, got, err, c.want, c.wantErr)
		}
	}
}

func TestSpanIDs(t *testing.T) {
	// JSON: hex as the specification says, and base64 as some senders do.
	for _, body := range []string{
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7"}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"S/kvNXezTaajzpKdDg5HNg==","spanId":"APBnqgupArc="}]}]}]}`,
	} {
		var req coltracepb.ExportTraceServiceRequest
		if err := protojson.Unmarshal([]byte(body), &req); err != nil {
			t.Fatal(err)
		}
		if got := spanID(req.ResourceSpans[0].ScopeSpans[0].Spans[0], true); got != wantID {
			t.Errorf("%s: id %q, want %q", body, got, wantID)
		}
	}
	// Without valid ids: a hash of the span, the same for the same span.
	sp := &tracepb.Span{Name: "x", TraceId: []byte{1, 2}}
	a, b := spanID(sp, false), spanID(proto.Clone(sp).(*tracepb.Span), false)
	if a != b || !strings.HasPrefix(a, "otel-sha256-") || len(a) != len("otel-sha256-")+64 {
		t.Errorf("ids %q, %q", a, b)
	}
}

// FuzzExport checks the decoders on arbitrary bodies: no panic, every span counted exactly
// once, and every event an id within the limit and only valid tags.
func FuzzExport(f *testing.F) {
	data, _ := proto.Marshal(oneSpan([]*commonpb.KeyValue{str("service.name", "s")}, &tracepb.Span{Attributes: []*commonpb.KeyValue{
		str("gen_ai.system", "openai"), num("gen_ai.usage.input_tokens", 3), str("tokenmeter.tag.k", "v")}}))
	f.Add(data, false)
	f.Add([]byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"tokenmeter.team","value":{"stringValue":"a"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","attributes":[{"key":"gen_ai.usage.output_tokens","value":{"intValue":"9"}}]}]}]}]}`), true)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"gen_ai.usage.input_tokens","value":{"doubleValue":1e300}}]}]}]}]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		var req coltracepb.ExportTraceServiceRequest
		var err error
		if isJSON {
			err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, &req)
		} else {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			return
		}
		total := 0
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				total += len(ss.GetSpans())
			}
		}
		b := spans(&req, isJSON)
		if len(b.events)+len(b.rejected)+b.ignored != total {
			t.Fatalf("%d events + %d rejected + %d ignored != %d spans", len(b.events), len(b.rejected), b.ignored, total)
		}
		for _, u := range b.events {
			if u.ID == "" || len(u.ID) > event.DefaultLimits.MaxID {
				t.Fatalf("event id %q", u.ID)
			}
			if len(u.Tags) > event.DefaultLimits.MaxTags {
				t.Fatalf("%d tags", len(u.Tags))
			}
			for k, v := range u.Tags {
				if err := normalize.CheckTag(k, v); err != nil {
					t.Fatalf("invalid tag on an event: %v", err)
				}
			}
		}
	})
}

// TestUnitAttributes: tokenmeter.units.<key> span attributes are the event's units, which its
// validation then judges like any other event's.
func TestUnitAttributes(t *testing.T) {
	b := spans(oneSpan(nil, &tracepb.Span{
		StartTimeUnixNano: uint64(t0.UnixNano()),
		Attributes: []*commonpb.KeyValue{
			str("gen_ai.provider.name", "anthropic"), str("gen_ai.response.model", "claude-sonnet-4-5"),
			num("gen_ai.usage.input_tokens", 900), num("gen_ai.usage.output_tokens", 80),
			num("tokenmeter.units.web_search_calls", 2), str("tokenmeter.units.requests", "1"),
			num("tokenmeter.units.web_searches", 1),
		},
	}), false)
	if len(b.events) != 1 || len(b.rejected) != 0 {
		t.Fatalf("%d events, rejected %q", len(b.events), b.rejected)
	}
	u := b.events[0]
	want := event.Units{"web_search_calls": 2, "requests": 1, "web_searches": 1}
	if !reflect.DeepEqual(u.Units, want) {
		t.Fatalf("Units = %v, want %v", u.Units, want)
	}
	u.Normalize(t0)
	wantErr := `units: key "web_searches" is not a unit (want web_search_calls, image_outputs, requests, audio_input_tokens, audio_output_tokens, the first three optionally with ":<variant>" of [a-z0-9._-])`
	if err := u.Validate(t0, event.DefaultLimits); err == nil || err.Error() != wantErr {
		t.Fatalf("Validate() = %v, want %s", err, wantErr)
	}
	// A unit count that is not an integer rejects the span, as a token count does.
	b = spans(oneSpan(nil, &tracepb.Span{Attributes: []*commonpb.KeyValue{
		str("gen_ai.provider.name", "openai"), num("gen_ai.usage.input_tokens", 1),
		dbl("tokenmeter.units.web_search_calls", 1.5),
	}}), false)
	if len(b.events) != 0 || len(b.rejected) != 1 || !strings.Contains(b.rejected[0], "tokenmeter.units.web_search_calls") {
		t.Fatalf("%d events, rejected %q, want the span rejected naming tokenmeter.units.web_search_calls", len(b.events), b.rejected)
	}
}
