package normalize

import (
	"encoding/json"
	"fmt"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

var anthropicTiers = map[string]string{
	"standard": event.TierStandard,
	"priority": event.TierPriority,
	"batch":    event.TierBatch,
}

// anthropicUsage is the usage object of the Messages API. Unlike the v1 event, input_tokens
// counts only the uncached input after the last cache breakpoint: cache reads and cache
// writes are reported beside it, and the v1 input is the sum of the three. Pointers tell
// "absent" from zero, since a message_delta repeats only the counts it updates.
type anthropicUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheCreation            *struct {
		Ephemeral5m *int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h *int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	ServiceTier string `json:"service_tier"`
	// ServerToolUse counts the tools Anthropic ran on its side, each billed per use.
	ServerToolUse *struct {
		WebSearchRequests *int64 `json:"web_search_requests"`
	} `json:"server_tool_use"`
}

// update overwrites the counts of a with those b carries: a message_delta's counts are
// cumulative, so the latest value of each count is the right one.
func (a *anthropicUsage) update(b *anthropicUsage) {
	for _, p := range [...]struct{ dst, src **int64 }{
		{&a.InputTokens, &b.InputTokens}, {&a.OutputTokens, &b.OutputTokens},
		{&a.CacheReadInputTokens, &b.CacheReadInputTokens},
		{&a.CacheCreationInputTokens, &b.CacheCreationInputTokens},
	} {
		if *p.src != nil {
			*p.dst = *p.src
		}
	}
	if b.CacheCreation != nil {
		a.CacheCreation = b.CacheCreation
	}
	if b.ServerToolUse != nil {
		a.ServerToolUse = b.ServerToolUse
	}
	if b.ServiceTier != "" {
		a.ServiceTier = b.ServiceTier
	}
}

func val(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// tokens converts to the v1 convention. cache_creation_input_tokens is the total of cache
// writes; cache_creation splits it by lifetime. When only the split is reported, its sum is
// the total; the one-hour part must fit in the total.
func (a *anthropicUsage) tokens() (event.Tokens, error) {
	read := val(a.CacheReadInputTokens)
	write := val(a.CacheCreationInputTokens)
	var w5m, w1h int64
	if cc := a.CacheCreation; cc != nil {
		w5m, w1h = val(cc.Ephemeral5m), val(cc.Ephemeral1h)
		if err := nonNegative(count{"cache_creation.ephemeral_5m_input_tokens", w5m},
			count{"cache_creation.ephemeral_1h_input_tokens", w1h}); err != nil {
			return event.Tokens{}, err
		}
		if a.CacheCreationInputTokens == nil {
			split, err := sum(count{"cache_creation.ephemeral_5m_input_tokens", w5m},
				count{"cache_creation.ephemeral_1h_input_tokens", w1h})
			if err != nil {
				return event.Tokens{}, err
			}
			write = split
		}
	}
	if w1h > write {
		return event.Tokens{}, fmt.Errorf("cache_creation.ephemeral_1h_input_tokens (%d) exceed cache_creation_input_tokens (%d)", w1h, write)
	}
	input, err := sum(count{"input_tokens", val(a.InputTokens)},
		count{"cache_read_input_tokens", read}, count{"cache_creation_input_tokens", write})
	if err != nil {
		return event.Tokens{}, err
	}
	output := val(a.OutputTokens)
	if err := nonNegative(count{"output_tokens", output}); err != nil {
		return event.Tokens{}, err
	}
	return event.Tokens{Input: input, Output: output, CachedInput: read, CacheWrite: write, CacheWrite1h: w1h}, nil
}

// anthropicMessage is a message object, whole or as message_start carries it.
type anthropicMessage struct {
	ID    string          `json:"id"`
	Model string          `json:"model"`
	Usage *anthropicUsage `json:"usage"`
}

// anthropicEvent is one server-sent event of a streamed message.
type anthropicEvent struct {
	Type    string            `json:"type"`
	Message *anthropicMessage `json:"message"`
	Usage   *anthropicUsage   `json:"usage"`
	Error   *struct {
		Type string `json:"type"`
	} `json:"error"`
}

func newAnthropic() event.Usage {
	return event.Usage{Provider: ProviderAnthropic, Operation: OperationChat}
}

func anthropicResponse(body []byte) (event.Usage, error) {
	var m anthropicMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return event.Usage{}, fmt.Errorf("decode message: %w", err)
	}
	if m.Usage == nil {
		return event.Usage{}, ErrNoUsage
	}
	u := newAnthropic()
	u.ResponseID, u.Model = m.ID, m.Model
	if err := anthropicFinish(&u, m.Usage); err != nil {
		return event.Usage{}, err
	}
	return u, nil
}

func anthropicFinish(u *event.Usage, a *anthropicUsage) error {
	t, err := a.tokens()
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	u.Usage = t
	setTier(u, a.ServiceTier, anthropicTiers)
	if st := a.ServerToolUse; st != nil {
		n := val(st.WebSearchRequests)
		if err := nonNegative(count{"server_tool_use.web_search_requests", n}); err != nil {
			return fmt.Errorf("usage: %w", err)
		}
		setUnit(u, event.UnitWebSearchCalls, n)
	}
	return nil
}
