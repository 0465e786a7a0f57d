package normalize

import (
	"encoding/json"
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// The output text a stream carried, counted as it passes by so that a stream cut off before
// its usage can still be estimated (Stream.Streamed). Text is what the model generated: the
// content, refusal, reasoning and tool-call argument deltas of Chat Completions, the *.delta
// events of the Responses API, and Anthropic's text, thinking and input_json deltas.

// openAIChatChoice is the part of a streamed choice that carries output text.
type openAIChatChoice struct {
	Delta *struct {
		Content          string `json:"content"`
		Refusal          string `json:"refusal"`
		ReasoningContent string `json:"reasoning_content"`
		ToolCalls        []struct {
			Function struct {
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"delta"`
}

// openAIStreamError is the error object an OpenAI-compatible server sends in place of a
// chunk when the call fails after the stream began.
type openAIStreamError struct {
	Type string `json:"type"`
	Code any    `json:"code"`
}

// chatText counts the output text of a Chat Completions chunk, and marks the stream failed
// when the chunk is an error.
func (s *Stream) chatText(c *openAIChat) {
	for _, ch := range c.Choices {
		if d := ch.Delta; d != nil {
			s.text += int64(len(d.Content) + len(d.Refusal) + len(d.ReasoningContent))
			for _, tc := range d.ToolCalls {
				s.text += int64(len(tc.Function.Arguments))
			}
		}
	}
	if c.Error != nil {
		s.u.Status = "error"
		if c.Error.Type != "" {
			s.u.Status = clip(c.Error.Type)
		}
	}
}

// responsesText counts the text of a Responses API delta event (response.output_text.delta,
// response.reasoning_summary_text.delta, response.function_call_arguments.delta, …) and
// marks the stream failed on an error event. It reports whether the event was one of those.
func (s *Stream) responsesText(name string, data []byte) bool {
	switch {
	case strings.HasSuffix(name, ".delta"):
		var e struct {
			Delta string `json:"delta"`
		}
		if json.Unmarshal(data, &e) == nil {
			s.text += int64(len(e.Delta))
		}
		return true
	case name == "error":
		s.u.Status = "error"
		return true
	}
	return false
}

// anthropicText counts the text of a content_block_delta event. An unreadable one counts
// nothing and is no error: it carries no usage.
func (s *Stream) anthropicText(data []byte) {
	var e struct {
		Delta *struct {
			Text        string `json:"text"`
			Thinking    string `json:"thinking"`
			PartialJSON string `json:"partial_json"`
		} `json:"delta"`
	}
	if json.Unmarshal(data, &e) != nil || e.Delta == nil {
		return
	}
	s.text += int64(len(e.Delta.Text) + len(e.Delta.Thinking) + len(e.Delta.PartialJSON))
}

// Streamed returns what the stream said so far whether or not it reported its usage — the
// model, response id, service tier and status it named, without token counts — and the
// bytes of output text (UTF-8, as decoded from JSON) it carried. Call it after the last Write.
func (s *Stream) Streamed() (event.Usage, int64) {
	u := s.u
	u.Usage, u.Units = event.Tokens{}, nil
	return u, s.text
}
