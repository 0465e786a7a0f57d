package normalize

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// openAITiers maps the service_tier OpenAI reports in a response (the tier that served the
// call, not the one requested) to the v1 tier. "scale" (Scale Tier, prepaid units) has no v1
// equivalent and is kept in TagProviderTier.
var openAITiers = map[string]string{
	"default":  event.TierStandard,
	"auto":     event.TierStandard,
	"standard": event.TierStandard,
	"flex":     event.TierFlex,
	"priority": event.TierPriority,
	"batch":    event.TierBatch,
}

// openAIInputDetails is the breakdown of the prompt in both APIs: cached_tokens were read
// from the prompt cache, cache_write_tokens written to it (reported by current responses,
// and by Azure OpenAI), both parts of the prompt.
type openAIInputDetails struct {
	CachedTokens     int64 `json:"cached_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	// AudioTokens are the audio part of the prompt (the audio models).
	AudioTokens int64 `json:"audio_tokens"`
}

// openAIOutputDetails is the breakdown of the output in both APIs.
type openAIOutputDetails struct {
	ReasoningTokens int64 `json:"reasoning_tokens"`
	AudioTokens     int64 `json:"audio_tokens"`
}

// openAIChatUsage is the usage object of Chat Completions. prompt_tokens includes the
// cached ones and completion_tokens the reasoning ones: OpenAI's convention is the v1 one.
type openAIChatUsage struct {
	PromptTokens            int64                `json:"prompt_tokens"`
	CompletionTokens        int64                `json:"completion_tokens"`
	PromptTokensDetails     *openAIInputDetails  `json:"prompt_tokens_details"`
	CompletionTokensDetails *openAIOutputDetails `json:"completion_tokens_details"`
}

// openAIChat is a chat.completion object or one chat.completion.chunk of a stream.
type openAIChat struct {
	ID          string           `json:"id"`
	Model       string           `json:"model"`
	ServiceTier string           `json:"service_tier"`
	Usage       *openAIChatUsage `json:"usage"`
	// Choices and Error are read from streamed chunks only (streamtext.go).
	Choices []openAIChatChoice `json:"choices"`
	Error   *openAIStreamError `json:"error"`
}

func (r *openAIChat) merge(u *event.Usage) {
	if r.ID != "" {
		u.ResponseID = r.ID
	}
	if r.Model != "" {
		u.Model = r.Model
	}
	if r.ServiceTier != "" {
		setTier(u, r.ServiceTier, openAITiers)
	}
}

func (c *openAIChatUsage) tokens() (event.Tokens, error) {
	t := event.Tokens{Input: c.PromptTokens, Output: c.CompletionTokens}
	if d := c.PromptTokensDetails; d != nil {
		t.CachedInput, t.CacheWrite = d.CachedTokens, d.CacheWriteTokens
	}
	if c.CompletionTokensDetails != nil {
		t.Reasoning = c.CompletionTokensDetails.ReasoningTokens
	}
	return t, nonNegative(count{"prompt_tokens", t.Input}, count{"completion_tokens", t.Output},
		count{"prompt_tokens_details.cached_tokens", t.CachedInput},
		count{"prompt_tokens_details.cache_write_tokens", t.CacheWrite},
		count{"completion_tokens_details.reasoning_tokens", t.Reasoning})
}

// finish sets u's tokens and their audio parts.
func (c *openAIChatUsage) finish(u *event.Usage) error {
	t, err := c.tokens()
	if err != nil {
		return err
	}
	u.Usage = t
	var in, out int64
	if d := c.PromptTokensDetails; d != nil {
		in = d.AudioTokens
	}
	if d := c.CompletionTokensDetails; d != nil {
		out = d.AudioTokens
	}
	setAudio(u, in, out)
	// The Chat Completions search models search the web before every answer, and the usage
	// does not say so: one web_search_calls per call (at the price of the default, medium,
	// search context; the request's size is not in the response).
	if strings.HasPrefix(u.Model, "gpt-4o-search-preview") || strings.HasPrefix(u.Model, "gpt-4o-mini-search-preview") {
		setUnit(u, event.UnitWebSearchCalls, 1)
	}
	return nil
}

func newOpenAIChat() event.Usage {
	return event.Usage{Provider: ProviderOpenAI, Operation: OperationChat}
}

func openAIChatResponse(body []byte) (event.Usage, error) {
	var r openAIChat
	if err := json.Unmarshal(body, &r); err != nil {
		return event.Usage{}, fmt.Errorf("decode chat completion: %w", err)
	}
	if r.Usage == nil {
		return event.Usage{}, ErrNoUsage
	}
	u := newOpenAIChat()
	r.merge(&u)
	if err := r.Usage.finish(&u); err != nil {
		return event.Usage{}, fmt.Errorf("usage: %w", err)
	}
	return u, nil
}

// openAIResponsesUsage is the usage object of the Responses API, in the same convention.
type openAIResponsesUsage struct {
	InputTokens         int64                `json:"input_tokens"`
	OutputTokens        int64                `json:"output_tokens"`
	InputTokensDetails  *openAIInputDetails  `json:"input_tokens_details"`
	OutputTokensDetails *openAIOutputDetails `json:"output_tokens_details"`
}

// openAIResponse is a response object of the Responses API. Its output items and tools say
// which provider-side tools the call ran, which the usage does not count: each
// web_search_call item is a search, each image_generation_call an image.
type openAIResponse struct {
	ID          string                `json:"id"`
	Model       string                `json:"model"`
	Status      string                `json:"status"`
	ServiceTier string                `json:"service_tier"`
	Usage       *openAIResponsesUsage `json:"usage"`
	Output      []struct {
		Type    string `json:"type"`
		Size    string `json:"size"`
		Quality string `json:"quality"`
	} `json:"output"`
	Tools []struct {
		Type string `json:"type"`
	} `json:"tools"`
}

// tools records the searches and images of the response's output items. A search through
// the web_search_preview tool, which OpenAI prices apart for non-reasoning models, is
// web_search_calls:preview.
func (r *openAIResponse) tools(u *event.Usage) {
	if len(r.Output) == 0 {
		return
	}
	search := event.UnitWebSearchCalls
	preview, current := false, false
	for _, t := range r.Tools {
		preview = preview || strings.HasPrefix(t.Type, "web_search_preview")
		current = current || t.Type == "web_search" || strings.HasPrefix(t.Type, "web_search_20")
	}
	if preview && !current {
		search += ":preview"
	}
	var searches int64
	images := map[string]int64{}
	for _, o := range r.Output {
		switch o.Type {
		case "web_search_call":
			searches++
		case "image_generation_call":
			images[imageKey(o.Size, o.Quality)]++
		}
	}
	setUnit(u, search, searches)
	for k, n := range images {
		setUnit(u, k, n)
	}
}

func (r *openAIResponse) merge(u *event.Usage) error {
	if r.ID != "" {
		u.ResponseID = r.ID
	}
	if r.Model != "" {
		u.Model = r.Model
	}
	if r.ServiceTier != "" {
		setTier(u, r.ServiceTier, openAITiers)
	}
	switch r.Status {
	case "", "completed", "in_progress", "queued":
		u.Status = event.StatusOK
	default: // incomplete, failed, cancelled: tokens were still consumed and billed
		u.Status = clip(r.Status)
	}
	if r.Usage == nil {
		return nil
	}
	t := event.Tokens{Input: r.Usage.InputTokens, Output: r.Usage.OutputTokens}
	if d := r.Usage.InputTokensDetails; d != nil {
		t.CachedInput, t.CacheWrite = d.CachedTokens, d.CacheWriteTokens
	}
	if d := r.Usage.OutputTokensDetails; d != nil {
		t.Reasoning = d.ReasoningTokens
	}
	if err := nonNegative(count{"input_tokens", t.Input}, count{"output_tokens", t.Output},
		count{"input_tokens_details.cached_tokens", t.CachedInput},
		count{"input_tokens_details.cache_write_tokens", t.CacheWrite},
		count{"output_tokens_details.reasoning_tokens", t.Reasoning}); err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	u.Usage = t
	var in, out int64
	if d := r.Usage.InputTokensDetails; d != nil {
		in = d.AudioTokens
	}
	if d := r.Usage.OutputTokensDetails; d != nil {
		out = d.AudioTokens
	}
	setAudio(u, in, out)
	r.tools(u)
	return nil
}

func newOpenAIResponses() event.Usage {
	return event.Usage{Provider: ProviderOpenAI, Operation: OperationResponses}
}

func openAIResponsesResponse(body []byte) (event.Usage, error) {
	var r openAIResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return event.Usage{}, fmt.Errorf("decode response: %w", err)
	}
	if r.Usage == nil {
		return event.Usage{}, ErrNoUsage
	}
	u := newOpenAIResponses()
	if err := r.merge(&u); err != nil {
		return event.Usage{}, err
	}
	return u, nil
}

// openAIResponsesEvent is one server-sent event of a streamed response; the response.*
// lifecycle events carry the response object, the final one with its usage.
type openAIResponsesEvent struct {
	Type     string          `json:"type"`
	Response *openAIResponse `json:"response"`
}
