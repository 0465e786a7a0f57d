package proxy

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Requests of the escape tests, and the input tokens each is estimated at.
const (
	// "You are terse." (14 bytes) and "Name three primes." (18): ceil(32/4) = 8 tokens.
	chatRequest = `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},` +
		`"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Name three primes."}]}`
	chatInput = 8
	// "Answer in French." (17 bytes) and "What is the capital of Peru?" (28); the image counts
	// nothing: ceil(45/4) = 12 tokens.
	messagesRequest = `{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":"Answer in French.",` +
		`"messages":[{"role":"user","content":[{"type":"text","text":"What is the capital of Peru?"},` +
		`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgoAAAANSUhEUg=="}}]}]}`
	messagesInput = 12
)

// Chunks of a streamed Chat Completions answer: "2, 3" and " and 5." are 11 bytes of text,
// ceil(11/4) = 3 output tokens.
const (
	chunkRole  = `data: {"id":"chatcmpl-esc1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}` + "\n\n"
	chunkText1 = `data: {"id":"chatcmpl-esc1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"2, 3"}}]}` + "\n\n"
	chunkText2 = `data: {"id":"chatcmpl-esc1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":" and 5."}}]}` + "\n\n"
)

// escapedCount is tokenmeter_proxy_escaped_calls_total{reason}.
func (h *harness) escapedCount(reason string) float64 {
	return testutil.ToFloat64(h.proxy.metrics.escaped.WithLabelValues(reason))
}

// TestEscapedStreams: a stream that ends without its usage — cut off by the upstream, ended
// without include_usage, or ended by an error after generation began — is one estimated
// event: input from the request, output from the text streamed, measured counts kept.
func TestEscapedStreams(t *testing.T) {
	for _, tc := range []struct {
		name, path, request string
		// stream is what the upstream sends; abort breaks the connection after it.
		stream string
		abort  bool
		want   event.Usage
	}{
		{
			name: "cut stream", path: "/openai/v1/chat/completions", request: chatRequest,
			stream: chunkRole + chunkText1 + chunkText2, abort: true,
			want: event.Usage{ID: "proxy-openai-chatcmpl-esc1", Provider: "openai", Model: "gpt-4o-mini-2024-07-18", Operation: "chat",
				Usage: event.Tokens{Input: chatInput, Output: 3}, ResponseID: "chatcmpl-esc1", Status: "incomplete",
				Estimated: true, EstimateReason: event.EstimateCutStream},
		},
		{
			name: "stream without include_usage", path: "/openai/v1/chat/completions",
			request: strings.Replace(chatRequest, `"stream_options":{"include_usage":true},`, "", 1),
			stream:  chunkRole + chunkText1 + chunkText2 + "data: [DONE]\n\n",
			want: event.Usage{ID: "proxy-openai-chatcmpl-esc1", Provider: "openai", Model: "gpt-4o-mini-2024-07-18", Operation: "chat",
				Usage: event.Tokens{Input: chatInput, Output: 3}, ResponseID: "chatcmpl-esc1", Status: "ok",
				Estimated: true, EstimateReason: event.EstimateNoUsage},
		},
		{
			name: "openai error chunk after generation began", path: "/openai/v1/chat/completions", request: chatRequest,
			stream: chunkRole + chunkText1 + `data: {"error":{"message":"The server had an error while processing your request.","type":"server_error"}}` + "\n\n",
			want: event.Usage{ID: "proxy-openai-chatcmpl-esc1", Provider: "openai", Model: "gpt-4o-mini-2024-07-18", Operation: "chat",
				Usage: event.Tokens{Input: chatInput, Output: 1}, ResponseID: "chatcmpl-esc1", Status: "server_error",
				Estimated: true, EstimateReason: event.EstimateUpstreamError},
		},
		{
			// message_start measured the input (kept); its output_tokens (1) is short of the
			// 21 bytes streamed, ceil(21/4) = 6.
			name: "anthropic error event after generation began", path: "/anthropic/v1/messages", request: messagesRequest,
			stream: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_esc2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"usage\":{\"input_tokens\":1500,\"cache_read_input_tokens\":1024,\"output_tokens\":1}}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Bonjour, je suis l\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\u00e0.\"}}\n\n" +
				"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
			want: event.Usage{ID: "proxy-anthropic-msg_esc2", Provider: "anthropic", Model: "claude-sonnet-4-5-20250929", Operation: "chat",
				Usage: event.Tokens{Input: 2524, Output: 6, CachedInput: 1024}, ResponseID: "msg_esc2", Status: "overloaded_error",
				Estimated: true, EstimateReason: event.EstimateUpstreamError},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rc recorder
			h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc.record(r)
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, tc.stream)
				w.(http.Flusher).Flush()
				if tc.abort {
					panic(http.ErrAbortHandler) // the connection breaks: no final chunk
				}
			}))
			resp, err := http.Post(h.srv.URL+tc.path, "application/json", strings.NewReader(tc.request))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != tc.stream {
				t.Fatalf("the client read\n%s\nwant\n%s", got, tc.stream)
			}
			if rows := h.events(1); !reflect.DeepEqual(rows[0], h.want(tc.want)) {
				t.Fatalf("event\n %+v\nwant\n %+v", rows[0], h.want(tc.want))
			}
			if n := h.escapedCount(tc.want.EstimateReason); n != 1 {
				t.Errorf("escaped_calls_total{reason=%q} = %v, want 1", tc.want.EstimateReason, n)
			}
		})
	}
}

// TestEscapedClientGoneMidStream: the client hangs up after two chunks, before the usage;
// the estimate counts the text the proxy passed on ("2, 3": 1 token).
func TestEscapedClientGoneMidStream(t *testing.T) {
	var rc recorder
	step := make(chan struct{})
	h := newHarness(t, streamUpstream(&rc, []byte(chunkRole+chunkText1+chunkText2), step))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/openai/v1/chat/completions", strings.NewReader(chatRequest))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for events := 0; events < 2; {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			if events++; events == 1 {
				step <- struct{}{} // the upstream may send the second chunk
			}
		}
	}
	cancel()
	resp.Body.Close()
	want := h.want(event.Usage{ID: "proxy-openai-chatcmpl-esc1", Provider: "openai", Model: "gpt-4o-mini-2024-07-18", Operation: "chat",
		Usage: event.Tokens{Input: chatInput, Output: 1}, ResponseID: "chatcmpl-esc1", Status: "incomplete",
		Estimated: true, EstimateReason: event.EstimateClientGone})
	if rows := h.events(1); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
	if n := h.escapedCount(event.EstimateClientGone); n != 1 {
		t.Errorf("escaped_calls_total{reason=client_gone} = %v, want 1", n)
	}
}

// TestEscapedUnanswered: a request the upstream took but never answered — the client hung
// up, or the response headers did not come in time — is estimated from the request alone.
// The event has no response id, so its id is random.
func TestEscapedUnanswered(t *testing.T) {
	for _, tc := range []struct {
		name       string
		clientGone bool
		want       event.Usage
		status     int
	}{
		{name: "client gone", clientGone: true,
			want: event.Usage{Provider: "anthropic", Model: "claude-sonnet-4-5", Operation: "chat", Usage: event.Tokens{Input: messagesInput},
				Status: "incomplete", Estimated: true, EstimateReason: event.EstimateClientGone}},
		{name: "upstream timeout", status: http.StatusBadGateway,
			want: event.Usage{Provider: "anthropic", Model: "claude-sonnet-4-5", Operation: "chat", Usage: event.Tokens{Input: messagesInput},
				Status: "timeout", Estimated: true, EstimateReason: event.EstimateUpstreamTimeout}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rc recorder
			took, release := make(chan struct{}, 1), make(chan struct{})
			defer close(release)
			h := newHarnessWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc.record(r)
				took <- struct{}{}
				select { // never answers
				case <-release:
				case <-r.Context().Done():
				}
			}), func(cfg *Config) {
				if !tc.clientGone {
					cfg.ResponseHeaderTimeout = 100 * time.Millisecond
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/anthropic/v1/messages", strings.NewReader(messagesRequest))
			answered := make(chan int, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					answered <- 0
					return
				}
				resp.Body.Close()
				answered <- resp.StatusCode
			}()
			<-took
			if tc.clientGone {
				cancel()
			}
			if got := <-answered; got != tc.status {
				t.Fatalf("the client got %d, want %d", got, tc.status)
			}
			rows := h.events(1)
			if !strings.HasPrefix(rows[0].ID, "proxy-anthropic-") || len(rows[0].ID) != len("proxy-anthropic-")+32 {
				t.Fatalf("event id %q, want proxy-anthropic- and 32 hex digits", rows[0].ID)
			}
			tc.want.ID = rows[0].ID
			if want := h.want(tc.want); !reflect.DeepEqual(rows[0], want) {
				t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
			}
			if n := h.escapedCount(tc.want.EstimateReason); n != 1 {
				t.Errorf("escaped_calls_total{reason=%q} = %v, want 1", tc.want.EstimateReason, n)
			}
		})
	}
}

func TestEstimateRequest(t *testing.T) {
	f := func(name, body, wantModel string, wantTokens int64) {
		t.Helper()
		model, tokens := estimateRequest([]byte(body))
		if model != wantModel || tokens != wantTokens {
			t.Errorf("%s: estimateRequest = %q, %d; want %q, %d", name, model, tokens, wantModel, wantTokens)
		}
	}
	f("chat", chatRequest, "gpt-4o-mini", chatInput)
	f("messages with an image", messagesRequest, "claude-sonnet-4-5", messagesInput)
	// "Be brief." 9 + "Hi" 2 + the tools' 96 JSON bytes = 107: 27 tokens.
	f("chat with tools", `{"model":"gpt-4.1","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],`+
		`"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}]}`, "gpt-4.1", 27)
	// "Translate." 10 + "Good morning" 12 + an earlier answer's "Buenos" 6 = 28: 7 tokens.
	f("responses", `{"model":"gpt-5","instructions":"Translate.","input":[{"role":"user","content":[{"type":"input_text","text":"Good morning"}]},{"role":"assistant","content":[{"type":"output_text","text":"Buenos"}]}]}`, "gpt-5", 7)
	f("responses, input a string", `{"model":"gpt-5","input":"Tell me a joke."}`, "gpt-5", 4)
	// Two strings, 5 + 7 bytes: 3 tokens; three token ids, one token each.
	f("embeddings", `{"model":"text-embedding-3-small","input":["hello","goodbye"]}`, "text-embedding-3-small", 3)
	f("embeddings of token ids", `{"model":"text-embedding-3-small","input":[[1,2,3]]}`, "text-embedding-3-small", 3)
	// Three UTF-8 bytes a character: 9 bytes, 3 tokens.
	f("CJK", `{"model":"m","messages":[{"role":"user","content":"日本語"}]}`, "m", 3)
	f("not JSON", `{"model":"m","messages":`, "", 0)
	f("empty", ``, "", 0)
}

// TestRequestBodyBound: a body larger than MaxCapture is forwarded whole and estimated at 0.
func TestRequestBodyBound(t *testing.T) {
	b := newRequestBody(io.NopCloser(strings.NewReader(chatRequest)), int64(len(chatRequest)-1))
	if n, err := io.Copy(io.Discard, b); n != int64(len(chatRequest)) || err != nil {
		t.Fatalf("read %d bytes, %v; want %d", n, err, len(chatRequest))
	}
	if model, tokens := b.estimate(); model != "" || tokens != 0 || !b.wentUpstream() {
		t.Fatalf("estimate = %q, %d, sent %v; want \"\", 0, true", model, tokens, b.wentUpstream())
	}
	b = newRequestBody(io.NopCloser(strings.NewReader(chatRequest)), int64(len(chatRequest)))
	io.Copy(io.Discard, b)
	for range 2 { // the second reads the estimate kept
		if model, tokens := b.estimate(); model != "gpt-4o-mini" || tokens != chatInput || b.buf.Len() != 0 {
			t.Fatalf("estimate = %q, %d, %d bytes held; want gpt-4o-mini, %d, 0", model, tokens, b.buf.Len(), chatInput)
		}
	}
}

// TestRequestBodySettles: a body over settleAbove is estimated once the upstream answers and
// its bytes let go; a smaller one is kept for an estimate that may never be needed.
func TestRequestBodySettles(t *testing.T) {
	// 70,000 bytes of content: 17,500 tokens.
	large := `{"model":"gpt-4.1","messages":[{"role":"user","content":"` + strings.Repeat("abcd", 17_500) + `"}]}`
	b := newRequestBody(io.NopCloser(strings.NewReader(large)), DefaultMaxCapture)
	io.Copy(io.Discard, b)
	held := func(b *requestBody) int {
		b.mu.Lock() // settle's estimate may still run
		defer b.mu.Unlock()
		return b.buf.Len()
	}
	b.settle()
	if model, tokens := b.estimate(); model != "gpt-4.1" || tokens != 17_500 || held(b) != 0 {
		t.Fatalf("estimate = %q, %d, %d bytes held; want gpt-4.1, 17500, 0", model, tokens, held(b))
	}
	small := newRequestBody(io.NopCloser(strings.NewReader(chatRequest)), DefaultMaxCapture)
	io.Copy(io.Discard, small)
	small.settle()
	if n := held(small); n != len(chatRequest) {
		t.Fatalf("a small body holds %d bytes after settle, want all %d", n, len(chatRequest))
	}
}

// FuzzEstimateRequest: any body is estimated without panicking, at no more tokens than it
// has bytes.
func FuzzEstimateRequest(f *testing.F) {
	for _, s := range []string{chatRequest, messagesRequest, `{"input":[[1,2,3]]}`, `{"tools":[]}`, `[]`, `"x"`, `{"messages":[{"content":null}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, tokens := estimateRequest(body); tokens < 0 || tokens > int64(len(body)) {
			t.Fatalf("estimateRequest(%q) = %d tokens, want 0..%d", body, tokens, len(body))
		}
	})
}
