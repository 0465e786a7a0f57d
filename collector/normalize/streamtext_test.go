package normalize

import (
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

func TestStreamed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format Format
		body   string
		want   event.Usage
		text   int64
	}{
		{
			// Cut before the usage chunk: content, a refusal and tool-call arguments count.
			name: "openai chat cut", format: OpenAIChat,
			body: `data: {"id":"chatcmpl-1","model":"gpt-4o-mini","choices":[{"delta":{"role":"assistant","content":""}}]}` + "\n\n" +
				`data: {"id":"chatcmpl-1","model":"gpt-4o-mini","choices":[{"delta":{"content":"Hello, w\u00f6rld"}}]}` + "\n\n" +
				`data: {"id":"chatcmpl-1","model":"gpt-4o-mini","choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"q\":1}"}}]}}]}` + "\n\n",
			want: event.Usage{Provider: "openai", Operation: "chat", Model: "gpt-4o-mini", ResponseID: "chatcmpl-1"},
			text: 13 + 7,
		},
		{
			name: "openai chat error chunk", format: OpenAIChat,
			body: `data: {"id":"chatcmpl-2","model":"gpt-4o","choices":[{"delta":{"content":"abcd"}}]}` + "\n\n" +
				`data: {"error":{"message":"The server had an error","type":"server_error"}}` + "\n\n",
			want: event.Usage{Provider: "openai", Operation: "chat", Model: "gpt-4o", ResponseID: "chatcmpl-2", Status: "server_error"},
			text: 4,
		},
		{
			name: "anthropic deltas", format: Anthropic,
			body: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \\\"there\\\"\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n" +
				"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
			want: event.Usage{Provider: "anthropic", Operation: "chat", Model: "claude-sonnet-4-5", ResponseID: "msg_1", Status: "overloaded_error"},
			text: 3 + 10 + 5,
		},
		{
			name: "responses deltas", format: OpenAIResponses,
			body: "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5\",\"status\":\"in_progress\"}}\n\n" +
				"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Once upon\"}\n\n" +
				"event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{}\"}\n\n",
			want: event.Usage{Provider: "openai", Operation: "responses", Model: "gpt-5", ResponseID: "resp_1", Status: "ok"},
			text: 9 + 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStream(tc.format)
			s.Write([]byte(tc.body))
			s.Usage() // as the proxy does: Streamed is read after Usage
			got, text := s.Streamed()
			if got.Model != tc.want.Model || got.ResponseID != tc.want.ResponseID || got.Status != tc.want.Status ||
				got.Provider != tc.want.Provider || got.Operation != tc.want.Operation || got.Usage != (event.Tokens{}) {
				t.Errorf("Streamed usage = %+v, want %+v", got, tc.want)
			}
			if text != tc.text {
				t.Errorf("Streamed text = %d bytes, want %d", text, tc.text)
			}
		})
	}
}

// FuzzStreamed: whatever a stream holds, Streamed counts no more text than the stream has
// bytes, and never a token count.
func FuzzStreamed(f *testing.F) {
	f.Add(uint8(OpenAIChat), []byte(`data: {"id":"c","choices":[{"delta":{"content":"hi","tool_calls":[{"function":{"arguments":"{}"}}]}}]}`+"\n\n"))
	f.Add(uint8(Anthropic), []byte("event: content_block_delta\ndata: {\"delta\":{\"text\":\"\\u00e9\"}}\n\n"))
	f.Add(uint8(OpenAIResponses), []byte("event: response.output_text.delta\ndata: {\"delta\":\"x\"}\n\nevent: error\ndata: {}\n\n"))
	f.Fuzz(func(t *testing.T, format uint8, body []byte) {
		s := NewStream(Format(format%3 + 1)) // the proxy's formats: OpenAIChat, OpenAIResponses, Anthropic
		s.Write(body)
		s.Usage()
		u, text := s.Streamed()
		if text < 0 || text > int64(len(body)) || u.Usage != (event.Tokens{}) || u.Units != nil {
			t.Fatalf("Streamed = %+v, %d text bytes of a %d-byte stream", u, text, len(body))
		}
	})
}
