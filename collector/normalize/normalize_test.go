package normalize

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// fixtures are realistic response bodies, each with the exact event it must produce.
var fixtures = []struct {
	file   string
	format Format
	stream bool
	want   event.Usage
}{
	{
		file: "openai_chat.json", format: OpenAIChat,
		want: event.Usage{
			Provider: "openai", Model: "o4-mini-2025-04-16", Operation: "chat",
			Usage:       event.Tokens{Input: 2006, Output: 1300, CachedInput: 1920, Reasoning: 1024},
			ServiceTier: "flex", ResponseID: "chatcmpl-CNqXK2XtM2xZ6mbS1WzAhsUG7tD9c",
		},
	},
	{
		file: "openai_chat_stream.sse", format: OpenAIChat, stream: true,
		want: event.Usage{
			Provider: "openai", Model: "gpt-4o-2024-08-06", Operation: "chat",
			Usage:       event.Tokens{Input: 1536, Output: 3, CachedInput: 1280},
			ServiceTier: "standard", ResponseID: "chatcmpl-CNqYbT1pq4bXhdmB8mJ7Kx2wDq1Zr",
		},
	},
	{
		file: "openai_responses.json", format: OpenAIResponses,
		want: event.Usage{
			Provider: "openai", Model: "gpt-5-2025-08-07", Operation: "responses",
			Usage:       event.Tokens{Input: 5200, Output: 700, CachedInput: 4096, Reasoning: 512},
			ServiceTier: "priority", Status: "ok", ResponseID: "resp_68c1a4b3e2f48193a5d1e0c7b6f9a2d40c1e7f3b2a9d8c6e",
		},
	},
	{
		file: "openai_responses_stream.sse", format: OpenAIResponses, stream: true,
		want: event.Usage{
			Provider: "openai", Model: "gpt-4.1-mini-2025-04-14", Operation: "responses",
			Usage:       event.Tokens{Input: 812, Output: 4},
			ServiceTier: "standard", Status: "ok", ResponseID: "resp_68c1a5d0b1e881939c3f2e1d0a9b8c7d0e1f2a3b4c5d6e7f",
		},
	},
	{
		// prompt_tokens_details.cache_write_tokens: prompt-cache writes, part of the prompt.
		file: "openai_chat_cache_write.json", format: OpenAIChat,
		want: event.Usage{
			Provider: "openai", Model: "gpt-5.1-2025-11-13", Operation: "chat",
			Usage:       event.Tokens{Input: 9350, Output: 420, CachedInput: 2048, CacheWrite: 7168, Reasoning: 256},
			ServiceTier: "standard", ResponseID: "chatcmpl-DQ7rM4aVh2pXcL9sWt3YbKe1nFo8G",
		},
	},
	{
		file: "openai_responses_cache_write.json", format: OpenAIResponses,
		want: event.Usage{
			Provider: "openai", Model: "gpt-5.1-2025-11-13", Operation: "responses",
			Usage:       event.Tokens{Input: 12800, Output: 3, CacheWrite: 12288},
			ServiceTier: "standard", Status: "ok", ResponseID: "resp_0d5f1e2a3b4c5d6e7f80919293a4b5c6d7e8f9a0b1c2d3e4",
		},
	},
	{
		// input 210 + cache read 12,000 + cache write 4,000, of which 3,000 for one hour.
		file: "anthropic.json", format: Anthropic,
		want: event.Usage{
			Provider: "anthropic", Model: "claude-sonnet-4-5-20250929", Operation: "chat",
			Usage:       event.Tokens{Input: 16210, Output: 356, CachedInput: 12000, CacheWrite: 4000, CacheWrite1h: 3000},
			ServiceTier: "standard", ResponseID: "msg_01XFDUDYJgAACzvnptvVoYEL",
		},
	},
	{
		// message_start's output_tokens (1) is replaced by message_delta's cumulative 15.
		file: "anthropic_stream.sse", format: Anthropic, stream: true,
		want: event.Usage{
			Provider: "anthropic", Model: "claude-haiku-4-5-20251001", Operation: "chat",
			Usage:       event.Tokens{Input: 2073, Output: 15, CachedInput: 2048},
			ServiceTier: "priority", ResponseID: "msg_01HCDu5LRGeP2o7s2xGmxyx8",
		},
	},
	{
		// output = candidates 8 + thoughts 527; the prompt already includes the cache.
		file: "gemini.json", format: Gemini,
		want: event.Usage{
			Provider: "google", Model: "gemini-2.5-flash", Operation: "chat",
			Usage:      event.Tokens{Input: 9120, Output: 535, CachedInput: 8192, Reasoning: 527},
			ResponseID: "mkQnabPFNMmZ0-kPwaCx6Ak",
		},
	},
	{
		// The last chunk's usageMetadata counts: prompt 12 + tool-use prompt 6; candidates 11
		// + thoughts 328.
		file: "gemini_stream.sse", format: Gemini, stream: true,
		want: event.Usage{
			Provider: "google", Model: "gemini-2.5-pro", Operation: "chat",
			Usage:      event.Tokens{Input: 18, Output: 339, Reasoning: 328},
			ResponseID: "tUQnadbHLpLa7M8Po7P_kAs",
		},
	},
	{
		// streamGenerateContent without alt=sse: a JSON array of chunks, read whole.
		file: "vertex_stream_array.json", format: Gemini,
		want: event.Usage{
			Provider: "google", Model: "gemini-2.0-flash-001", Operation: "chat",
			Usage: event.Tokens{Input: 41, Output: 5}, ServiceTier: "standard", ResponseID: "xkQnaaW4E4mk3NoP4sSw2Ak",
			Tags: map[string]string{"provider_tier": "provisioned_throughput"},
		},
	},
	{
		// input 150 + cache read 3,072 + cache write 1,024.
		file: "bedrock_converse.json", format: BedrockConverse,
		want: event.Usage{
			Provider: "bedrock", Operation: "chat", LatencyMS: 1620,
			Usage: event.Tokens{Input: 4246, Output: 64, CachedInput: 3072, CacheWrite: 1024},
		},
	},
	{
		file: "bedrock_converse_stream.bin", format: BedrockConverse, stream: true,
		want: event.Usage{
			Provider: "bedrock", Operation: "chat", LatencyMS: 2311,
			Usage: event.Tokens{Input: 2360, Output: 42, CacheWrite: 2048},
		},
	},
	// Charges that are not tokens (event.Units).
	{
		// prompt_tokens_details.audio_tokens and completion_tokens_details.audio_tokens.
		file: "openai_chat_audio.json", format: OpenAIChat,
		want: event.Usage{
			Provider: "openai", Model: "gpt-4o-audio-preview-2025-06-03", Operation: "chat",
			Usage:       event.Tokens{Input: 1048, Output: 312},
			Units:       event.Units{"audio_input_tokens": 1024, "audio_output_tokens": 256},
			ServiceTier: "standard", ResponseID: "chatcmpl-DRa1uDi0AuDi0AuDi0AuDi0AuDi0",
		},
	},
	{
		// Two web_search_call items through the preview tool; image_generation_call items by
		// size and quality, as reported, lower-cased ("auto" is kept: the catalogue prices no
		// such image, so the call is stored unpriced rather than free).
		file: "openai_responses_tools.json", format: OpenAIResponses,
		want: event.Usage{
			Provider: "openai", Model: "gpt-4.1-2025-04-14", Operation: "responses",
			Usage: event.Tokens{Input: 2300, Output: 120},
			Units: event.Units{"web_search_calls:preview": 2, "image_outputs:1024x1536:high": 1,
				"image_outputs:auto:medium": 1},
			ServiceTier: "standard", Status: "ok", ResponseID: "resp_6933b2d0e5f081a0b7c3d9e1f2a4b6c8",
		},
	},
	{
		// usage.server_tool_use.web_search_requests.
		file: "anthropic_web_search.json", format: Anthropic,
		want: event.Usage{
			Provider: "anthropic", Model: "claude-sonnet-4-5-20250929", Operation: "chat",
			Usage:       event.Tokens{Input: 6039, Output: 931},
			Units:       event.Units{"web_search_calls": 3},
			ServiceTier: "standard", ResponseID: "msg_01WebSearchA1b2C3d4E5f6G7",
		},
	},
	{
		file: "anthropic_web_search_stream.sse", format: Anthropic, stream: true,
		want: event.Usage{
			Provider: "anthropic", Model: "claude-haiku-4-5-20251001", Operation: "chat",
			Usage:       event.Tokens{Input: 5120, Output: 220},
			Units:       event.Units{"web_search_calls": 2},
			ServiceTier: "standard", ResponseID: "msg_01WebSearchStreamZ9y8X7",
		},
	},
	{
		// promptTokensDetails of modality AUDIO; a grounded prompt of a 2.x model is one
		// search however many queries it ran.
		file: "gemini_audio_grounding.json", format: Gemini,
		want: event.Usage{
			Provider: "google", Model: "gemini-2.5-flash", Operation: "chat",
			Usage:      event.Tokens{Input: 812, Output: 10},
			Units:      event.Units{"audio_input_tokens": 800, "web_search_calls": 1},
			ResponseID: "GrNdAudi0ExAmPlE1a2b3c",
		},
	},
}

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := readFixtureErr(name)
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	return b
}

func readFixtureErr(name string) ([]byte, error) { return os.ReadFile(filepath.Join("testdata", name)) }

// streamUsage writes body into a new Stream in pieces of size bytes (the whole body when
// size is 0).
func streamUsage(f Format, body []byte, size int) (event.Usage, error) {
	s := NewStream(f)
	if size <= 0 {
		size = len(body) + 1
	}
	for len(body) > 0 {
		n := min(size, len(body))
		// A fresh copy per write: the Stream must not keep the caller's buffer.
		piece := append([]byte(nil), body[:n]...)
		if got, err := s.Write(piece); got != n || err != nil {
			return event.Usage{}, errors.New("Write did not take every byte")
		}
		for i := range piece {
			piece[i] = 0xff
		}
		body = body[n:]
	}
	return s.Usage()
}

func TestFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			body := readFixture(t, fx.file)
			if !fx.stream {
				got, err := Response(fx.format, body)
				if err != nil {
					t.Fatalf("Response(%s) error = %v", fx.format, err)
				}
				if !reflect.DeepEqual(got, fx.want) {
					t.Fatalf("Response(%s) =\n %+v\nwant\n %+v", fx.format, got, fx.want)
				}
				return
			}
			// Every split of the stream must read the same: providers' chunks and TCP
			// segments cut events anywhere.
			for _, size := range []int{0, 1, 2, 7, 64, 1000} {
				got, err := streamUsage(fx.format, body, size)
				if err != nil {
					t.Fatalf("stream in pieces of %d: error = %v", size, err)
				}
				if !reflect.DeepEqual(got, fx.want) {
					t.Fatalf("stream in pieces of %d =\n %+v\nwant\n %+v", size, got, fx.want)
				}
			}
		})
	}
}

// The fixtures' events are valid v1 events once the caller adds id and time.
func TestFixturesValidate(t *testing.T) {
	now := testNow()
	for _, fx := range fixtures {
		body := readFixture(t, fx.file)
		var u event.Usage
		var err error
		if fx.stream {
			u, err = streamUsage(fx.format, body, 0)
		} else {
			u, err = Response(fx.format, body)
		}
		if err != nil {
			t.Fatalf("%s: %v", fx.file, err)
		}
		u.ID = "evt-" + fx.file
		if u.Model == "" {
			u.Model = "anthropic.claude-3-5-haiku-20241022-v1:0"
		}
		u.Normalize(now)
		if err := u.Validate(now, event.DefaultLimits); err != nil {
			t.Errorf("%s: the event is not valid: %v", fx.file, err)
		}
	}
}

func TestCRLFAndMultiLineData(t *testing.T) {
	// The specification joins data lines with "\n"; a JSON value may be split over them.
	body := "event: message_start\r\ndata: {\"type\":\"message_start\",\r\ndata: \"message\":{\"id\":\"msg_1\",\"model\":\"claude-opus-4-1\",\"usage\":{\"input_tokens\":7,\"output_tokens\":2}}}\r\n\r\n" +
		": a comment\r\nevent: message_delta\r\nid: 3\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}"
	got, err := streamUsage(Anthropic, []byte(body), 3)
	if err != nil {
		t.Fatal(err)
	}
	want := event.Usage{Provider: "anthropic", Model: "claude-opus-4-1", Operation: "chat", ResponseID: "msg_1",
		Usage: event.Tokens{Input: 7, Output: 9}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestAnthropicCacheCreation(t *testing.T) {
	f := func(usage string, want event.Tokens, wantErr string) {
		t.Helper()
		got, err := Response(Anthropic, []byte(`{"id":"msg_x","model":"claude-sonnet-4","usage":`+usage+`}`))
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("usage %s: error = %v, want one containing %q", usage, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("usage %s: %v", usage, err)
		}
		if got.Usage != want {
			t.Fatalf("usage %s: tokens = %+v, want %+v", usage, got.Usage, want)
		}
	}
	// Only the split: its sum is the total.
	f(`{"input_tokens":5,"output_tokens":1,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20}}`,
		event.Tokens{Input: 35, Output: 1, CacheWrite: 30, CacheWrite1h: 20}, "")
	// Only the total (before the split was reported): all five-minute writes.
	f(`{"input_tokens":5,"output_tokens":1,"cache_creation_input_tokens":30}`,
		event.Tokens{Input: 35, Output: 1, CacheWrite: 30}, "")
	// No cache at all.
	f(`{"input_tokens":5,"output_tokens":1}`, event.Tokens{Input: 5, Output: 1}, "")
	f(`{"input_tokens":5,"output_tokens":1,"cache_creation_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":20}}`,
		event.Tokens{}, "ephemeral_1h_input_tokens (20) exceed cache_creation_input_tokens (10)")
	f(`{"input_tokens":-5,"output_tokens":1}`, event.Tokens{}, "input_tokens is negative (-5)")
	f(`{"input_tokens":5,"output_tokens":-1}`, event.Tokens{}, "output_tokens is negative (-1)")
	f(`{"input_tokens":9223372036854775807,"output_tokens":1,"cache_read_input_tokens":1}`,
		event.Tokens{}, "cache_read_input_tokens (1) overflows the token total")
	f(`{"input_tokens":1e3,"output_tokens":1}`, event.Tokens{}, "cannot unmarshal number 1e3")
	f(`{"input_tokens":"5"}`, event.Tokens{}, "cannot unmarshal string")
}

func TestTiers(t *testing.T) {
	f := func(format Format, body, wantTier, wantTag string) {
		t.Helper()
		u, err := Response(format, []byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if u.ServiceTier != wantTier || u.Tags[TagProviderTier] != wantTag {
			t.Fatalf("%s: tier %q tag %q, want %q and %q", body, u.ServiceTier, u.Tags[TagProviderTier], wantTier, wantTag)
		}
	}
	chat := func(tier string) string {
		return `{"id":"c","model":"m","service_tier":"` + tier + `","usage":{"prompt_tokens":1,"completion_tokens":1}}`
	}
	f(OpenAIChat, chat("default"), "standard", "")
	f(OpenAIChat, chat("flex"), "flex", "")
	f(OpenAIChat, chat("priority"), "priority", "")
	f(OpenAIChat, chat("scale"), "standard", "scale")
	f(OpenAIChat, chat(strings.Repeat("Z", 300)), "standard", strings.Repeat("z", 64))
	f(OpenAIChat, `{"id":"c","model":"m","usage":{"prompt_tokens":1,"completion_tokens":1}}`, "", "")
	f(Anthropic, `{"id":"m","model":"c","usage":{"input_tokens":1,"output_tokens":1,"service_tier":"batch"}}`, "batch", "")
	gemini := func(traffic string) string {
		return `{"modelVersion":"g","usageMetadata":{"promptTokenCount":1,"trafficType":"` + traffic + `"}}`
	}
	f(Gemini, gemini("ON_DEMAND"), "standard", "")
	f(Gemini, gemini("ON_DEMAND_PRIORITY"), "priority", "")
	f(Gemini, gemini("ON_DEMAND_FLEX"), "flex", "")
}

func TestResponsesStatus(t *testing.T) {
	u, err := Response(OpenAIResponses, []byte(`{"id":"resp_1","model":"gpt-5","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":10,"output_tokens":100,"output_tokens_details":{"reasoning_tokens":100}}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := event.Usage{Provider: "openai", Model: "gpt-5", Operation: "responses", ResponseID: "resp_1", Status: "incomplete",
		Usage: event.Tokens{Input: 10, Output: 100, Reasoning: 100}}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("got %+v, want %+v", u, want)
	}
}

func TestNoUsage(t *testing.T) {
	for _, c := range []struct {
		name   string
		format Format
		body   string
		stream bool
	}{
		{"openai error body", OpenAIChat, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`, false},
		{"anthropic error body", Anthropic, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, false},
		{"gemini without usageMetadata", Gemini, `{"candidates":[]}`, false},
		{"gemini empty array", Gemini, `[]`, false},
		{"bedrock without usage", BedrockConverse, `{"stopReason":"end_turn"}`, false},
		{"responses without usage", OpenAIResponses, `{"id":"resp_1","status":"queued"}`, false},
		// Without stream_options.include_usage every chunk lacks usage.
		{"openai stream without include_usage", OpenAIChat,
			"data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n", true},
		{"responses stream cut before completion", OpenAIResponses,
			"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"usage\":null}}\n\n", true},
		{"empty stream", Gemini, "", true},
		{"bedrock stream without metadata", BedrockConverse, string(esEvent("messageStop", `{"stopReason":"end_turn"}`)), true},
	} {
		var err error
		if c.stream {
			_, err = streamUsage(c.format, []byte(c.body), 5)
		} else {
			_, err = Response(c.format, []byte(c.body))
		}
		if !errors.Is(err, ErrNoUsage) {
			t.Errorf("%s: error = %v, want ErrNoUsage", c.name, err)
		}
	}
}

func TestMalformed(t *testing.T) {
	for _, c := range []struct {
		name    string
		format  Format
		body    string
		stream  bool
		wantErr string
	}{
		{"truncated JSON", OpenAIChat, `{"id":"chatcmpl-1","usage":{"prompt_tokens":1`, false, "read openai-chat response: decode chat completion: unexpected end of JSON input"},
		{"not JSON", Gemini, `<html>502 Bad Gateway</html>`, false, "read gemini response: decode GenerateContentResponse: invalid character '<'"},
		{"wrong type", OpenAIResponses, `{"usage":{"input_tokens":[1]}}`, false, "cannot unmarshal array"},
		{"negative reasoning", OpenAIChat, `{"usage":{"prompt_tokens":1,"completion_tokens":1,"completion_tokens_details":{"reasoning_tokens":-4}}}`, false, "usage: completion_tokens_details.reasoning_tokens is negative (-4)"},
		{"negative cache write", OpenAIResponses, `{"usage":{"input_tokens":1,"output_tokens":1,"input_tokens_details":{"cache_write_tokens":-3}}}`, false, "usage: input_tokens_details.cache_write_tokens is negative (-3)"},
		{"negative chat cache write", OpenAIChat, `{"usage":{"prompt_tokens":1,"completion_tokens":1,"prompt_tokens_details":{"cache_write_tokens":-3}}}`, false, "usage: prompt_tokens_details.cache_write_tokens is negative (-3)"},
		{"gemini overflow", Gemini, `{"usageMetadata":{"candidatesTokenCount":9223372036854775807,"thoughtsTokenCount":9}}`, false, "thoughtsTokenCount (9) overflows"},
		{"bedrock negative", BedrockConverse, `{"usage":{"inputTokens":1,"cacheWriteInputTokens":-2}}`, false, "cacheWriteInputTokens is negative (-2)"},
		{"unknown format", Format(99), `{}`, false, "unknown response format 99"},
		{"garbage usage chunk", OpenAIChat, "data: {\"id\":\"c\",\"usage\":{\"prompt_tokens\":1}}\n\ndata: {\"usage\": nope}\n\n", true, ""},
		{"anthropic message_start without message", Anthropic, "event: message_start\ndata: {\"type\":\"message_start\"}\n\n", true, "message_start without a message"},
		{"bad event stream checksum", BedrockConverse, string(corrupt(esEvent("metadata", `{"usage":{"inputTokens":1}}`))), true, "event stream message checksum mismatch"},
		{"bad event stream prelude", BedrockConverse, "\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00garbage", true, "event stream prelude checksum mismatch"},
		{"unknown stream format", Format(0), "data: {}\n\n", true, "unknown response format 0"},
	} {
		var err error
		var got event.Usage
		if c.stream {
			got, err = streamUsage(c.format, []byte(c.body), 4)
		} else {
			got, err = Response(c.format, []byte(c.body))
		}
		if c.wantErr == "" {
			// The usage chunk was read; a later broken chunk does not undo it.
			if err != nil || got.Usage.Input != 1 {
				t.Errorf("%s: got %+v, %v; want the usage of the good chunk", c.name, got, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: error = %v, want one containing %q", c.name, err, c.wantErr)
		}
	}
}

func corrupt(b []byte) []byte {
	b = append([]byte(nil), b...)
	b[len(b)-5] ^= 0x01
	return b
}

// An event larger than the buffer bound is skipped without being held in memory, and the
// events around it are still read.
func TestOversizedEvent(t *testing.T) {
	huge := strings.Repeat("x", maxEvent+10)
	body := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
		"event: content_block_delta\ndata: {\"text\":\"" + huge + "\"}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":" + "4}}\n\n"
	for _, size := range []int{0, 4096} {
		s := NewStream(Anthropic)
		for b := []byte(body); len(b) > 0; {
			n := len(b)
			if size > 0 {
				n = min(size, len(b))
			}
			s.Write(b[:n])
			b = b[n:]
			if cap(s.line) > 2*maxEvent || cap(s.data) > 2*maxEvent {
				t.Fatalf("the stream buffers %d/%d bytes", cap(s.line), cap(s.data))
			}
		}
		u, err := s.Usage()
		if err != nil {
			t.Fatal(err)
		}
		if u.Usage != (event.Tokens{Input: 3, Output: 4}) || s.skipped != 1 {
			t.Fatalf("pieces of %d: tokens %+v, %d skipped; want {3 4}, 1 skipped", size, u.Usage, s.skipped)
		}
	}
}

func TestBedrockStreamException(t *testing.T) {
	body := append(esEvent("metadata", `{"usage":{"inputTokens":40,"outputTokens":2}}`),
		esEncode([][2]string{{":message-type", "exception"}, {":exception-type", "throttlingException"}}, []byte(`{"message":"slow down"}`))...)
	u, err := streamUsage(BedrockConverse, body, 9)
	if err != nil {
		t.Fatal(err)
	}
	want := event.Usage{Provider: "bedrock", Operation: "chat", Status: "throttlingException", Usage: event.Tokens{Input: 40, Output: 2}}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("got %+v, want %+v", u, want)
	}
}

func TestAnthropicStreamError(t *testing.T) {
	body := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"model\":\"claude-opus-4-1\",\"usage\":{\"input_tokens\":900,\"output_tokens\":1}}}\n\n" +
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
	u, err := streamUsage(Anthropic, []byte(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := event.Usage{Provider: "anthropic", Model: "claude-opus-4-1", Operation: "chat", ResponseID: "msg_2",
		Status: "overloaded_error", Usage: event.Tokens{Input: 900, Output: 1}}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("got %+v, want %+v", u, want)
	}
}

func TestParseFormat(t *testing.T) {
	for f := OpenAIChat; f <= BedrockConverse; f++ {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
	}
	if _, err := ParseFormat("cohere"); err == nil || !strings.Contains(err.Error(), `unknown response format "cohere"`) {
		t.Errorf("ParseFormat(cohere) error = %v", err)
	}
	if s := Format(42).String(); s != "format(42)" {
		t.Errorf("Format(42).String() = %q", s)
	}
}

func TestResponseTooLarge(t *testing.T) {
	_, err := Response(OpenAIChat, make([]byte, maxBody+1))
	if err == nil || !strings.Contains(err.Error(), "more than 67108864") {
		t.Fatalf("error = %v", err)
	}
}

func TestSumBounds(t *testing.T) {
	if got, err := sum(count{"a", math.MaxInt64 - 1}, count{"b", 1}); err != nil || got != math.MaxInt64 {
		t.Fatalf("sum to MaxInt64 = %d, %v", got, err)
	}
}

func TestCheckTag(t *testing.T) {
	for _, c := range []struct{ key, value, wantErr string }{
		{"team", "search", ""},
		{"a.b-c_9", "", ""},
		{"traffic", "background", ""},
		{"", "v", "must be 1 to 64 bytes"},
		{strings.Repeat("k", 65), "v", "must be 1 to 64 bytes"},
		{"Team", "v", "may only contain"},
		{"team", strings.Repeat("v", 257), "at most 256 bytes"},
		{"team", "a\tb", "without control characters"},
		{"team", "\xff", "without control characters"},
		{"traffic", "bots", `"bots" is not one of user, background`},
	} {
		err := CheckTag(c.key, c.value)
		if (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("CheckTag(%q, %q) = %v, want %q", clip(c.key), clip(c.value), err, c.wantErr)
		}
	}
	var u event.Usage
	OpenAIServiceTier(&u, "priority")
	if u.ServiceTier != "priority" {
		t.Errorf("OpenAIServiceTier(priority) = %q", u.ServiceTier)
	}
}
