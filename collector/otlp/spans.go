package otlp

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// batch is what one export request holds: the events of its usage spans, the reasons its
// other usage spans were rejected, and how many spans carried no usage.
type batch struct {
	events      []event.Usage
	rejected    []string
	ignored     int
	droppedTags int
}

// providers maps gen_ai.provider.name / gen_ai.system values to the pricing catalogue's
// provider names.
var providers = map[string]string{
	"gcp.gemini":         normalize.ProviderGoogle,
	"gcp.vertex_ai":      normalize.ProviderGoogle,
	"gcp.gen_ai":         normalize.ProviderGoogle,
	"vertex_ai":          normalize.ProviderGoogle,
	"gemini":             normalize.ProviderGoogle,
	"aws.bedrock":        normalize.ProviderBedrock,
	"azure.ai.openai":    "azure",
	"az.ai.openai":       "azure",
	"azure.ai.inference": "azure",
	"az.ai.inference":    "azure",
	"x_ai":               "xai",
	"mistral_ai":         "mistral",
}

// attribution is what resource and span attributes say about who to charge.
type attribution struct {
	tags                      map[string]string
	workflowID, promptVersion string
	dropped                   int
}

func (a *attribution) set(key, value string) {
	if normalize.CheckTag(key, value) != nil || !visible(value) {
		a.dropped++
		return
	}
	if a.tags == nil {
		a.tags = make(map[string]string)
	}
	if _, exists := a.tags[key]; !exists && len(a.tags) >= event.DefaultLimits.MaxTags {
		a.dropped++
		return
	}
	a.tags[key] = value
}

func (a *attribution) setString(dst *string, value string) {
	if len(value) > event.DefaultLimits.MaxString || !normalize.CleanString(value) || !visible(value) {
		a.dropped++
		return
	}
	*dst = value
}

// visible says whether s holds none of the characters event.Validate refuses
// (event.Invisible): an attribute that would make the event invalid is dropped, not the span.
func visible(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return event.Invisible(r) != "" }) < 0
}

// tokenmeter reads one tokenmeter.* attribute (rule 3 of the package documentation); it
// reports whether the key was one.
func (a *attribution) tokenmeter(key string, v *commonpb.AnyValue) bool {
	name, ok := strings.CutPrefix(key, "tokenmeter.")
	if !ok {
		return false
	}
	s, isString := stringValue(v)
	if !isString {
		a.dropped++
		return true
	}
	switch name {
	case event.TagTeam, event.TagFeature, event.TagEnv, event.TagCostCenter, event.TagTraffic:
		a.set(name, s)
	case "workflow_id":
		a.setString(&a.workflowID, s)
	case "prompt_version":
		a.setString(&a.promptVersion, s)
	default:
		if tag, ok := strings.CutPrefix(name, "tag."); ok {
			a.set(tag, s)
		} else {
			a.dropped++
		}
	}
	return true
}

func (a attribution) clone() attribution {
	c := a
	if a.tags != nil {
		c.tags = make(map[string]string, len(a.tags))
		for k, v := range a.tags {
			c.tags[k] = v
		}
	}
	return c
}

// resourceAttribution applies rules 1 to 3 to a resource's attributes.
func resourceAttribution(attrs []*commonpb.KeyValue) attribution {
	var a attribution
	var service, env, envOld string
	for _, kv := range attrs {
		switch kv.GetKey() {
		case "service.name":
			service, _ = stringValue(kv.GetValue())
		case "deployment.environment.name":
			env, _ = stringValue(kv.GetValue())
		case "deployment.environment":
			envOld, _ = stringValue(kv.GetValue())
		}
	}
	if service != "" {
		a.set("service", service)
	}
	if env == "" {
		env = envOld
	}
	if env != "" {
		a.set(event.TagEnv, env)
	}
	for _, kv := range attrs {
		a.tokenmeter(kv.GetKey(), kv.GetValue())
	}
	return a
}

// spans turns an export request into events. fromJSON says the ids were decoded from
// OTLP/JSON (see hexID).
func spans(req *coltracepb.ExportTraceServiceRequest, fromJSON bool) batch {
	var b batch
	for _, rs := range req.GetResourceSpans() {
		res := resourceAttribution(rs.GetResource().GetAttributes())
		b.droppedTags += res.dropped
		res.dropped = 0
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				u, isUsage, err := usage(sp, res, fromJSON, &b.droppedTags)
				switch {
				case !isUsage:
					b.ignored++
				case err != nil:
					b.rejected = append(b.rejected, fmt.Sprintf("span %s: %v", u.ID, err))
				default:
					b.events = append(b.events, u)
				}
			}
		}
	}
	return b
}

// usage maps one span. It reports whether the span is a usage span at all, and why a usage
// span cannot become an event; the returned event always carries the span's id.
//
// Cache counts go by several names; where a span carries more than one, the first non-zero
// in this order wins:
//
//	cached_input_tokens  gen_ai.usage.cache_read.input_tokens (semantic conventions),
//	                     gen_ai.usage.cache_read_input_tokens, gen_ai.usage.input_tokens.cached
//	cache_write_tokens   gen_ai.usage.cache_creation.input_tokens (semantic conventions),
//	                     gen_ai.usage.cache_write.input_tokens (the Anthropic SDKs),
//	                     gen_ai.usage.cache_creation_input_tokens, gen_ai.usage.input_tokens.cache_write;
//	                     else the sum of the two lifetimes below
//	cache_write_1h_tokens anthropic.usage.cache_creation.ephemeral_1h_input_tokens (the
//	                     5-minute part is anthropic.usage.cache_creation.ephemeral_5m_input_tokens)
//
// All of them are parts of gen_ai.usage.input_tokens, as the conventions define it.
//
// A span attribute tokenmeter.units.<key> (an integer) is the count of the unit <key> of
// event.Units: tokenmeter.units.web_search_calls, tokenmeter.units.audio_input_tokens, ….
func usage(sp *tracepb.Span, res attribution, fromJSON bool, dropped *int) (event.Usage, bool, error) {
	var (
		u                                              event.Usage
		provider, system, reqModel, respModel, errType string
		tier                                           string
		isUsage                                        bool
		firstErr                                       error
		legacyIn, legacyOut                            *int64
		cacheRead, cacheWrite                          [3]int64
		write5m, write1h                               int64
	)
	a := res.clone()
	tokens := func(dst *int64, kv *commonpb.KeyValue) {
		n, err := intValue(kv.GetValue())
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", kv.GetKey(), err)
			}
			return
		}
		*dst = n
	}
	for _, kv := range sp.GetAttributes() {
		key := kv.GetKey()
		switch key {
		case "gen_ai.usage.input_tokens":
			isUsage = true
			tokens(&u.Usage.Input, kv)
		case "gen_ai.usage.output_tokens":
			isUsage = true
			tokens(&u.Usage.Output, kv)
		case "gen_ai.usage.prompt_tokens":
			isUsage = true
			legacyIn = new(int64)
			tokens(legacyIn, kv)
		case "gen_ai.usage.completion_tokens":
			isUsage = true
			legacyOut = new(int64)
			tokens(legacyOut, kv)
		case "gen_ai.usage.cache_read.input_tokens":
			tokens(&cacheRead[0], kv)
		case "gen_ai.usage.cache_read_input_tokens":
			tokens(&cacheRead[1], kv)
		case "gen_ai.usage.input_tokens.cached":
			tokens(&cacheRead[2], kv)
		case "gen_ai.usage.cache_creation.input_tokens":
			tokens(&cacheWrite[0], kv)
		case "gen_ai.usage.cache_write.input_tokens":
			tokens(&cacheWrite[1], kv)
		case "gen_ai.usage.cache_creation_input_tokens", "gen_ai.usage.input_tokens.cache_write":
			tokens(&cacheWrite[2], kv)
		case "anthropic.usage.cache_creation.ephemeral_5m_input_tokens":
			tokens(&write5m, kv)
		case "anthropic.usage.cache_creation.ephemeral_1h_input_tokens":
			tokens(&write1h, kv)
		case "gen_ai.usage.reasoning.output_tokens":
			tokens(&u.Usage.Reasoning, kv)
		case "gen_ai.provider.name":
			provider, _ = stringValue(kv.GetValue())
		case "gen_ai.system":
			system, _ = stringValue(kv.GetValue())
		case "gen_ai.request.model":
			reqModel, _ = stringValue(kv.GetValue())
		case "gen_ai.response.model":
			respModel, _ = stringValue(kv.GetValue())
		case "gen_ai.response.id":
			u.ResponseID, _ = stringValue(kv.GetValue())
		case "gen_ai.operation.name":
			u.Operation, _ = stringValue(kv.GetValue())
		case "openai.response.service_tier", "gen_ai.openai.response.service_tier":
			tier, _ = stringValue(kv.GetValue())
		case "error.type":
			errType, _ = stringValue(kv.GetValue())
		default:
			if unit, ok := strings.CutPrefix(key, "tokenmeter.units."); ok {
				// Charges that are not tokens (event.Units), which the conventions do not
				// name yet; the event's validation judges key and count.
				var n int64
				tokens(&n, kv)
				if u.Units == nil {
					u.Units = event.Units{}
				}
				u.Units[unit] = n
				continue
			}
			a.tokenmeter(key, kv.GetValue())
		}
	}
	u.ID = spanID(sp, fromJSON)
	if !isUsage {
		return u, false, nil
	}
	*dropped += a.dropped
	// The current names win over the deprecated ones when a span carries both.
	if legacyIn != nil && u.Usage.Input == 0 {
		u.Usage.Input = *legacyIn
	}
	if legacyOut != nil && u.Usage.Output == 0 {
		u.Usage.Output = *legacyOut
	}
	u.Usage.CachedInput = firstNonZero(cacheRead[:])
	u.Usage.CacheWrite = firstNonZero(cacheWrite[:])
	// The Anthropic SDK splits its cache writes by lifetime; without a total, the split is it.
	if u.Usage.CacheWrite == 0 {
		u.Usage.CacheWrite = write5m + write1h
	}
	u.Usage.CacheWrite1h = write1h
	if firstErr != nil {
		return u, true, firstErr
	}
	if provider == "" {
		provider = system
	}
	u.Provider = strings.ToLower(provider)
	if p, ok := providers[u.Provider]; ok {
		u.Provider = p
	}
	u.Model = respModel
	if u.Model == "" {
		u.Model = reqModel
	}
	if tier != "" {
		normalize.OpenAIServiceTier(&u, tier)
	}
	start, end := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
	switch {
	case end > 0 && end <= math.MaxInt64:
		u.Time = time.Unix(0, int64(end)).UTC()
	case start > 0 && start <= math.MaxInt64:
		u.Time = time.Unix(0, int64(start)).UTC()
	}
	if start > 0 && end >= start {
		if ms := (end - start) / 1e6; ms <= event.MaxLatency {
			u.LatencyMS = int64(ms)
		}
	}
	if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		u.Status = "error"
		if errType != "" {
			u.Status = errType
		}
	}
	if len(a.tags) > 0 {
		if u.Tags == nil {
			u.Tags = make(map[string]string, len(a.tags))
		}
		for k, v := range a.tags {
			u.Tags[k] = v
		}
	}
	u.WorkflowID, u.PromptVersion = a.workflowID, a.promptVersion
	return u, true, nil
}

// firstNonZero returns the first count a span reported, the names being in order of
// preference: a span carrying both a current and an older name counts the current one.
func firstNonZero(counts []int64) int64 {
	for _, n := range counts {
		if n != 0 {
			return n
		}
	}
	return 0
}

// spanID is the event id of a span: its trace and span ids, which a re-sent export repeats.
// A span without valid ids (16 and 8 bytes) is identified by a hash of its encoding instead,
// which a re-sent export repeats too.
func spanID(sp *tracepb.Span, fromJSON bool) string {
	trace, okTrace := hexID(sp.GetTraceId(), 16, fromJSON)
	span, okSpan := hexID(sp.GetSpanId(), 8, fromJSON)
	if okTrace && okSpan {
		return "otel-" + trace + "-" + span
	}
	data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(sp)
	sum := sha256.Sum256(data)
	return "otel-sha256-" + hex.EncodeToString(sum[:])
}

// stringValue reads a string attribute.
func stringValue(v *commonpb.AnyValue) (string, bool) {
	s, ok := v.GetValue().(*commonpb.AnyValue_StringValue)
	if !ok {
		return "", false
	}
	return s.StringValue, true
}

// intValue reads a token count: an int attribute as the conventions define it, or — from
// instrumentations that get the type wrong — an integral double or a decimal string.
func intValue(v *commonpb.AnyValue) (int64, error) {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		return x.IntValue, nil
	case *commonpb.AnyValue_DoubleValue:
		d := x.DoubleValue
		if d != math.Trunc(d) || d < math.MinInt64 || d >= math.MaxInt64 {
			return 0, fmt.Errorf("%v is not an integer", d)
		}
		return int64(d), nil
	case *commonpb.AnyValue_StringValue:
		n, err := strconv.ParseInt(strings.TrimSpace(x.StringValue), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not an integer", clip(x.StringValue))
		}
		return n, nil
	}
	return 0, fmt.Errorf("a %T is not an integer", v.GetValue())
}
