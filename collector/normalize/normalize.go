// Package normalize turns each AI provider's own usage report into the v1 usage event
// (DESIGN.md §2.1), whose input_tokens include cached and cache-write tokens and whose
// output_tokens include reasoning tokens. Providers disagree on both points: Anthropic and
// Bedrock report cache reads and writes outside their input count, and Gemini reports thoughts
// outside its candidates count. This package adds them in, once, here.
//
// Response reads a whole (non-streaming) response body; Stream reads a streamed one
// incrementally, as its bytes pass by. Both fill Provider, Model, Operation, Usage,
// ServiceTier, ResponseID, Status and, where the provider reports it, LatencyMS. They leave ID,
// Time and Tags to the caller, which knows the call's context.
package normalize

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Format is one provider API's response format.
type Format int

// The formats this package reads.
const (
	// OpenAIChat is OpenAI's Chat Completions API (and every API compatible with it: Azure
	// OpenAI, Groq, Mistral, DeepSeek, …); streamed as server-sent events whose final chunk
	// carries the usage when the request set stream_options.include_usage.
	OpenAIChat Format = iota + 1
	// OpenAIResponses is OpenAI's Responses API; streamed as server-sent events whose
	// response.completed (or .incomplete, .failed) event carries the usage.
	OpenAIResponses
	// Anthropic is Anthropic's Messages API; streamed as server-sent events, message_start
	// carrying the input usage and message_delta the cumulative output.
	Anthropic
	// Gemini is Google's generateContent (Gemini API and Vertex AI); streamed as
	// server-sent events (alt=sse) or as a JSON array of chunks, each carrying cumulative
	// usageMetadata.
	Gemini
	// BedrockConverse is AWS Bedrock's Converse API; ConverseStream is an AWS event stream
	// (binary frames) whose metadata event carries the usage. Neither body names the model
	// nor the request: the caller sets Model (from the URL) and ResponseID (from the
	// x-amzn-RequestId header).
	BedrockConverse
)

var formatNames = [...]string{
	OpenAIChat:      "openai-chat",
	OpenAIResponses: "openai-responses",
	Anthropic:       "anthropic",
	Gemini:          "gemini",
	BedrockConverse: "bedrock-converse",
}

func (f Format) String() string {
	if f > 0 && int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", int(f))
}

// ParseFormat returns the format named as by Format.String.
func ParseFormat(name string) (Format, error) {
	for f, n := range formatNames {
		if n != "" && n == name {
			return Format(f), nil
		}
	}
	return 0, fmt.Errorf("unknown response format %q (want one of %s)", name, strings.Join(formatNames[1:], ", "))
}

// Provider names, as the shipped pricing catalogue spells them.
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
	ProviderGoogle    = "google"
	ProviderBedrock   = "bedrock"
)

// Operations the formats report.
const (
	OperationChat      = "chat"
	OperationResponses = "responses"
)

// TagProviderTier is the tag that keeps a service tier or traffic type the provider reported
// but that has no v1 service tier of its own (OpenAI's "scale", Vertex AI's provisioned
// throughput): the event is priced as standard, and the tag lets an analyst find such calls.
const TagProviderTier = "provider_tier"

// ErrNoUsage means a response carries no usage report: an error body, or a stream that ended
// before its usage chunk (an OpenAI stream without stream_options.include_usage, a stream the
// client abandoned).
var ErrNoUsage = errors.New("the response carries no usage")

// maxBody bounds what Response reads and what Stream buffers of one event; usage reports are
// tiny, and a response larger than this is not one a proxy should hold in memory.
const maxBody = 64 << 20

// Response reads the usage of a whole, non-streaming response body of format f. It returns
// an error wrapping ErrNoUsage when the body carries none.
func Response(f Format, body []byte) (event.Usage, error) {
	if len(body) > maxBody {
		return event.Usage{}, fmt.Errorf("read %s response: the body is %d bytes, more than %d", f, len(body), maxBody)
	}
	var u event.Usage
	var err error
	switch f {
	case OpenAIChat:
		u, err = openAIChatResponse(body)
	case OpenAIResponses:
		u, err = openAIResponsesResponse(body)
	case Anthropic:
		u, err = anthropicResponse(body)
	case Gemini:
		u, err = geminiResponse(body)
	case BedrockConverse:
		u, err = bedrockResponse(body)
	default:
		err = fmt.Errorf("unknown response format %d", int(f))
	}
	if err != nil {
		return event.Usage{}, fmt.Errorf("read %s response: %w", f, err)
	}
	return u, nil
}

// count is one token count a provider reported, named for error messages.
type count struct {
	name string
	v    int64
}

// sum adds token counts, refusing negative ones and an overflow: a provider (or a hostile
// upstream) reporting nonsense must produce an error, not a wrapped-around bill.
func sum(parts ...count) (int64, error) {
	var total int64
	for _, p := range parts {
		if p.v < 0 {
			return 0, fmt.Errorf("%s is negative (%d)", p.name, p.v)
		}
		if p.v > math.MaxInt64-total {
			return 0, fmt.Errorf("%s (%d) overflows the token total", p.name, p.v)
		}
		total += p.v
	}
	return total, nil
}

// nonNegative checks counts that are copied as they are.
func nonNegative(parts ...count) error {
	for _, p := range parts {
		if p.v < 0 {
			return fmt.Errorf("%s is negative (%d)", p.name, p.v)
		}
	}
	return nil
}

// setTier sets u's service tier from a tier the provider reported. A reported tier without a
// v1 equivalent is priced as standard and kept in the TagProviderTier tag.
func setTier(u *event.Usage, reported string, tiers map[string]string) {
	if reported == "" {
		return
	}
	if t, ok := tiers[reported]; ok {
		u.ServiceTier = t
		return
	}
	u.ServiceTier = event.TierStandard
	if u.Tags == nil {
		u.Tags = map[string]string{}
	}
	u.Tags[TagProviderTier] = clip(strings.ToLower(reported))
}

// clip bounds a provider-reported string copied into a tag or status, so that one odd value
// cannot make the whole event invalid by its length.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "")
}
