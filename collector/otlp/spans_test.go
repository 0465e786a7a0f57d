package otlp

import (
	"math"
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
