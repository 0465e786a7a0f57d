package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Calls that escaped metering (issue 18). A call the proxy forwarded may be billed although
// its answer carried no usage: the upstream broke the stream off, the client hung up, the
// upstream took the request and never answered, an OpenAI stream ended without
// include_usage, or an error event ended a stream after generation began. Rather than count
// such a call nowhere, the proxy emits it as an event with Estimated set and EstimateReason
// saying why, and counts it in tokenmeter_proxy_escaped_calls_total{reason}. The enricher
// prices it like any other event: its cost is an estimate of what the provider billed.
//
// The estimates are deterministic, and deliberately simple:
//
//   - output tokens: ceil(B/4), B the UTF-8 bytes of output text streamed before the end
//     (normalize.Stream.Streamed: content, refusal, reasoning and tool-call argument deltas);
//     0 for a call that streamed nothing or was not streamed;
//   - input tokens: ceil(B/4), B the UTF-8 bytes of the request's text — every string under
//     a key content, text, input, system, instructions, prompt, arguments, output, thinking
//     or refusal, at any depth — plus the JSON bytes of its tools, and 1 per number of an
//     input given as token ids (embeddings). Images, audio and files count nothing. A request
//     body larger than MaxCapture, or not JSON, is estimated at 0;
//   - a report that measured some usage but was cut off (an Anthropic stream reports its
//     input tokens at the start) keeps its measured counts, and its output becomes the
//     estimate when that is larger.
//
// Four bytes a token is OpenAI's rule of thumb for English text. It is a rough measure: it
// leaves out the few tokens of overhead each message costs, and counts each character of a
// script outside Latin as one to three quarters of a token where tokenizers often count one.

// escapeTextKeys are the request keys whose string values are prompt text.
var escapeTextKeys = map[string]bool{
	"content": true, "text": true, "input": true, "system": true, "instructions": true,
	"prompt": true, "arguments": true, "output": true, "thinking": true, "refusal": true,
}

// estimateTokens is the token estimate of n bytes of text: ceil(n/4).
func estimateTokens(n int64) int64 { return (n + 3) / 4 }

// estimateRequest reads a request body: the model it names and its estimated input tokens.
func estimateRequest(body []byte) (model string, tokens int64) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return "", 0
	}
	if raw, ok := top["model"]; ok {
		_ = json.Unmarshal(raw, &model)
	}
	var n int64
	for k, raw := range top {
		switch k {
		case "model":
		case "tools":
			n += int64(len(raw))
		default:
			var v any
			if json.Unmarshal(raw, &v) == nil {
				n += textBytes(k, v)
			}
		}
	}
	return model, estimateTokens(n)
}

// textBytes counts the bytes of prompt text in v, found under key.
func textBytes(key string, v any) int64 {
	switch v := v.(type) {
	case string:
		if escapeTextKeys[key] {
			return int64(len(v))
		}
	case float64:
		if key == "input" {
			return 4 // a token id: one token
		}
	case []any:
		var n int64
		for _, e := range v {
			n += textBytes(key, e)
		}
		return n
	case map[string]any:
		var n int64
		for k, e := range v {
			n += textBytes(k, e)
		}
		return n
	}
	return 0
}

// settleAbove is the size above which a request body is estimated as soon as the upstream
// answers, and its bytes let go (requestBody.settle).
const settleAbove = 64 << 10

// requestBody holds a metered request's body as the transport reads it, up to a bound, so
// that a call that escapes metering can be estimated from it. It is read by the transport
// and the estimate is taken by the handler, hence the lock.
//
// Estimating costs a JSON decoding of the body, which most calls never need: a small body is
// kept until the call ends and estimated only if the call escapes. A large one would be held
// for as long as its answer streams, so it is estimated, off the handler's path, once the
// upstream has answered (settle), and only the estimate is kept.
type requestBody struct {
	io.ReadCloser
	max int64

	mu   sync.Mutex
	buf  bytes.Buffer
	over bool // the body is larger than max: not held
	sent bool // read to its end: the whole request went upstream
	// done is set once the estimate is taken: model and tokens hold it, buf is let go.
	done   bool
	model  string
	tokens int64
}

func newRequestBody(body io.ReadCloser, max int64) *requestBody {
	return &requestBody{ReadCloser: body, max: max}
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > 0 && !b.over {
		if int64(b.buf.Len()+n) > b.max {
			b.over, b.buf = true, bytes.Buffer{}
		} else {
			b.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		b.sent = true
	}
	return n, err
}

// wentUpstream reports whether the whole request was sent upstream.
func (b *requestBody) wentUpstream() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent
}

// estimate is the model the request names and its estimated input tokens. It lets the
// body's bytes go.
func (b *requestBody) estimate() (string, int64) {
	if b == nil {
		return "", 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done && !b.over {
		b.model, b.tokens = estimateRequest(b.buf.Bytes())
	}
	b.done, b.buf = true, bytes.Buffer{}
	return b.model, b.tokens
}

// settle estimates a body larger than settleAbove in the background, once the whole of it was
// sent, and lets its bytes go; a smaller one is kept.
func (b *requestBody) settle() {
	if b == nil {
		return
	}
	b.mu.Lock()
	large := b.sent && !b.done && !b.over && b.buf.Len() > settleAbove
	b.mu.Unlock()
	if large {
		go b.estimate()
	}
}

// escaped counts a call that escaped metering and returns its estimated event. measured is
// what the response reported (no token counts when it reported none), streamed the bytes of
// output text it carried.
func (p *Proxy) escaped(c *call, measured event.Usage, streamed int64, reason string) event.Usage {
	p.metrics.escaped.WithLabelValues(reason).Inc()
	model, input := c.body.estimate()
	u := measured
	if u.Model == "" {
		u.Model = model
	}
	if u.Usage.Input == 0 {
		u.Usage.Input = input
	}
	u.Usage.Output = max(u.Usage.Output, estimateTokens(streamed))
	u.Estimated, u.EstimateReason = true, reason
	if u.Status == "" || u.Status == event.StatusOK {
		switch reason {
		case event.EstimateCutStream, event.EstimateClientGone:
			u.Status = "incomplete"
		case event.EstimateUpstreamTimeout:
			u.Status = "timeout"
		case event.EstimateUpstreamError:
			u.Status = "error"
		}
	}
	return u
}

// escapedUnanswered records a metered call that got no response: the client hung up, or the
// upstream timed out or broke the connection, after the whole request was sent upstream
// (before that, nothing was asked of the model).
func (p *Proxy) escapedUnanswered(c *call, timeout, clientGone bool) {
	if !c.body.wentUpstream() {
		return
	}
	reason := event.EstimateUpstreamError
	switch {
	case clientGone:
		reason = event.EstimateClientGone
	case timeout:
		reason = event.EstimateUpstreamTimeout
	}
	p.send(c, p.escaped(c, event.Usage{}, 0, reason), p.cfg.Now())
}

// escapeReason says why a streamed or captured response that ended as it did escaped
// metering: "" when its usage was measured in full. usage is what was read of it (ok when it
// had any), status the status the stream named.
func (t *tap) escapeReason(ok bool, status string, streamed int64, measuredOutput int64) string {
	failed := status != "" && status != event.StatusOK && status != "incomplete"
	switch {
	case ok && (t.eof && !failed || estimateTokens(streamed) <= measuredOutput):
		return "" // measured; a cut stream whose usage came first and covers what was streamed
	case !t.eof && (!t.readErr || t.ctx.Err() != nil):
		// The copy stopped with the upstream still sending (the client could not be written
		// to), or the upstream's body was canceled with the request.
		return event.EstimateClientGone
	case !t.eof:
		return event.EstimateCutStream
	case failed:
		return event.EstimateUpstreamError
	}
	return event.EstimateNoUsage
}

// streamed is what the response's stream said before it ended, and its output text bytes.
func (t *tap) streamed() (event.Usage, int64) {
	if t.stream == nil {
		return event.Usage{}, 0
	}
	return t.stream.Streamed()
}
