package normalize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// geminiTraffic maps Vertex AI's trafficType to the v1 tier. Provisioned throughput is paid
// for in advance; it is priced as standard and kept in TagProviderTier so that analysts can
// take it out. The Gemini API does not report trafficType at all.
var geminiTraffic = map[string]string{
	"ON_DEMAND":                event.TierStandard,
	"TRAFFIC_TYPE_UNSPECIFIED": event.TierStandard,
	"ON_DEMAND_PRIORITY":       event.TierPriority,
	"ON_DEMAND_FLEX":           event.TierFlex,
}

// geminiUsage is usageMetadata. promptTokenCount includes cachedContentTokenCount (the v1
// convention), but thoughtsTokenCount sits outside candidatesTokenCount and
// toolUsePromptTokenCount outside promptTokenCount: totalTokenCount is the sum of prompt,
// candidates, tool-use prompt and thoughts. Thoughts are billed as output, tool-use prompts
// as input.
type geminiUsage struct {
	PromptTokenCount        int64  `json:"promptTokenCount"`
	CandidatesTokenCount    int64  `json:"candidatesTokenCount"`
	CachedContentTokenCount int64  `json:"cachedContentTokenCount"`
	ThoughtsTokenCount      int64  `json:"thoughtsTokenCount"`
	ToolUsePromptTokenCount int64  `json:"toolUsePromptTokenCount"`
	TrafficType             string `json:"trafficType"`
	// The token counts by modality; the AUDIO ones are the audio parts.
	PromptTokensDetails     []geminiModalityCount `json:"promptTokensDetails"`
	CandidatesTokensDetails []geminiModalityCount `json:"candidatesTokensDetails"`
}

type geminiModalityCount struct {
	Modality   string `json:"modality"`
	TokenCount int64  `json:"tokenCount"`
}

// audio sums the AUDIO counts of details.
func audio(details []geminiModalityCount) int64 {
	var n int64
	for _, d := range details {
		if d.Modality == "AUDIO" && d.TokenCount > 0 && d.TokenCount <= event.DefaultLimits.MaxTokens {
			n += d.TokenCount
		}
	}
	return n
}

// geminiResponseBody is a GenerateContentResponse, whole or one chunk of a stream.
type geminiResponseBody struct {
	ModelVersion  string       `json:"modelVersion"`
	ResponseID    string       `json:"responseId"`
	UsageMetadata *geminiUsage `json:"usageMetadata"`
	Candidates    []struct {
		GroundingMetadata *struct {
			WebSearchQueries []string `json:"webSearchQueries"`
		} `json:"groundingMetadata"`
	} `json:"candidates"`
}

// grounding records the searches of Grounding with Google Search, which the usage does not
// count: Google bills the 1.x and 2.x models per grounded prompt (one that ran at least one
// search query) and later models per search query.
func (r *geminiResponseBody) grounding(u *event.Usage) {
	var queries int64
	for _, c := range r.Candidates {
		if g := c.GroundingMetadata; g != nil {
			queries += int64(len(g.WebSearchQueries))
		}
	}
	if queries == 0 {
		return
	}
	if m := strings.TrimPrefix(u.Model, "models/"); strings.HasPrefix(m, "gemini-1") || strings.HasPrefix(m, "gemini-2") {
		queries = 1
	}
	setUnit(u, event.UnitWebSearchCalls, min(queries, event.MaxUnitCount))
}

func (r *geminiResponseBody) merge(u *event.Usage, last **geminiUsage) {
	if r.ModelVersion != "" {
		u.Model = r.ModelVersion
	}
	r.grounding(u)
	if r.ResponseID != "" {
		u.ResponseID = r.ResponseID
	}
	if r.UsageMetadata != nil {
		*last = r.UsageMetadata // cumulative: the last chunk's is the call's
	}
}

func newGemini() event.Usage {
	return event.Usage{Provider: ProviderGoogle, Operation: OperationChat}
}

func geminiFinish(u *event.Usage, g *geminiUsage) error {
	input, err := sum(count{"promptTokenCount", g.PromptTokenCount}, count{"toolUsePromptTokenCount", g.ToolUsePromptTokenCount})
	if err != nil {
		return fmt.Errorf("usageMetadata: %w", err)
	}
	output, err := sum(count{"candidatesTokenCount", g.CandidatesTokenCount}, count{"thoughtsTokenCount", g.ThoughtsTokenCount})
	if err != nil {
		return fmt.Errorf("usageMetadata: %w", err)
	}
	if err := nonNegative(count{"cachedContentTokenCount", g.CachedContentTokenCount}); err != nil {
		return fmt.Errorf("usageMetadata: %w", err)
	}
	u.Usage = event.Tokens{Input: input, Output: output, CachedInput: g.CachedContentTokenCount, Reasoning: g.ThoughtsTokenCount}
	setAudio(u, audio(g.PromptTokensDetails), audio(g.CandidatesTokensDetails))
	setTier(u, g.TrafficType, geminiTraffic)
	return nil
}

// geminiResponse reads a generateContent body, or a streamGenerateContent body without
// alt=sse, which is a JSON array of chunks.
func geminiResponse(body []byte) (event.Usage, error) {
	var chunks []geminiResponseBody
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &chunks); err != nil {
			return event.Usage{}, fmt.Errorf("decode array of GenerateContentResponse: %w", err)
		}
	} else {
		var r geminiResponseBody
		if err := json.Unmarshal(body, &r); err != nil {
			return event.Usage{}, fmt.Errorf("decode GenerateContentResponse: %w", err)
		}
		chunks = []geminiResponseBody{r}
	}
	u := newGemini()
	var last *geminiUsage
	for i := range chunks {
		chunks[i].merge(&u, &last)
	}
	if last == nil {
		return event.Usage{}, ErrNoUsage
	}
	if err := geminiFinish(&u, last); err != nil {
		return event.Usage{}, err
	}
	return u, nil
}
