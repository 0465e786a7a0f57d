package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/collector/emit"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// apiKey and its binding: calls made with it are charged to payments / cc-7.
const (
	boundKey   = "sk-ant-api03-test-key-payments"
	unboundKey = "sk-proj-test-key-unbound"
)

// harness is a proxy in front of a fake upstream, emitting into embedded JetStream.
type harness struct {
	tb       testing.TB
	ns       *server.Server
	dir      string
	nc       *nats.Conn
	js       jetstream.JetStream
	em       *emit.Emitter
	reg      *prometheus.Registry
	proxy    *Proxy
	srv      *httptest.Server
	upstream *httptest.Server
	now      time.Time
}

func newHarness(t testing.TB, upstream http.Handler) *harness {
	t.Helper()
	return newHarnessWith(t, upstream, nil)
}

// newHarnessWith is newHarness with the proxy's config changed by edit.
func newHarnessWith(t testing.TB, upstream http.Handler, edit func(*Config)) *harness {
	t.Helper()
	h := &harness{tb: t, dir: t.TempDir()}
	h.ns = natstest.Start(t, h.dir, -1)
	h.nc = natstest.Connect(t, h.ns)
	h.js = streamtest.Streams(t, h.nc, nil)
	em, err := emit.New(h.nc, emit.Options{FlushInterval: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.em = em
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = em.Close(ctx)
	})
	h.upstream = httptest.NewServer(upstream)
	t.Cleanup(h.upstream.Close)
	bindings, err := ParseBindings([]byte(`{"keys":[{"sha256":"` + hash(boundKey) + `","name":"payments-prod","tags":{"team":"payments","cost_center":"cc-7"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	h.now = time.Now().UTC().Truncate(time.Millisecond)
	h.reg = prometheus.NewRegistry()
	cfg := Config{
		Routes: []Route{
			{Prefix: "/openai", Upstream: h.upstream.URL, API: APIOpenAI},
			{Prefix: "/anthropic", Upstream: h.upstream.URL + "/", API: APIAnthropic},
			{Prefix: "/azure", Upstream: h.upstream.URL + "/openai/deployments/gpt4o", API: APIOpenAI, Provider: "azure"},
		},
		Emitter:    em,
		Bindings:   bindings,
		Registerer: h.reg,
		Now:        func() time.Time { return h.now },
	}
	if edit != nil {
		edit(&cfg)
	}
	h.proxy, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(h.proxy)
	t.Cleanup(h.srv.Close)
	return h
}

func hash(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// events waits until n events were published and returns them sorted by id, with the
// emitter's receive time cleared.
func (h *harness) events(n int) []batch.Row {
	h.tb.Helper()
	var rows []batch.Row
	testkit.Eventually(h.tb, 10*time.Second, "events published", func() bool {
		rows = rows[:0]
		for _, m := range streamtest.Messages(h.tb, h.js, stream.Raw) {
			rows = append(rows, m.Rows...)
		}
		return len(rows) >= n
	})
	if len(rows) != n {
		h.tb.Fatalf("%d events published, want %d", len(rows), n)
	}
	for i := range rows {
		rows[i].Received = time.Time{}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	return rows
}

// want is the row an event becomes, as the emitter normalizes it.
func (h *harness) want(u event.Usage) batch.Row {
	u.Time = h.now
	u.Normalize(h.now)
	r := batch.FromUsage(&u, h.now, stream.PartitionOf(u.Provider, u.ResponseID, u.ID, stream.DefaultPartitions))
	r.Received = time.Time{}
	return r
}

func (h *harness) outcome(name string) float64 {
	return testutil.ToFloat64(h.proxy.metrics.outcomes.WithLabelValues(name))
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../normalize/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorded is what the fake upstream saw of one request.
type recorded struct {
	method, path, query string
	header              http.Header
	body                []byte
}

type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rc *recorder) record(r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = append(rc.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
}

func (rc *recorder) last(t *testing.T) recorded {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		t.Fatal("the upstream saw no request")
	}
	return rc.reqs[len(rc.reqs)-1]
}

// noCompression is a client that shows the bytes on the wire, compressed or not.
var noCompression = &http.Client{Transport: &http.Transport{DisableCompression: true}}

func TestOpenAIChat(t *testing.T) {
	body := fixture(t, "openai_chat.json")
	var rc recorder
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req_8b3c1e")
		w.Header().Set("Openai-Processing-Ms", "312")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	}))
	reqBody := `{"model":"o4-mini","messages":[{"role":"user","content":"What is the invoice total?"}],"service_tier":"flex"}`
	req, _ := http.NewRequest("POST", h.srv.URL+"/openai/v1/chat/completions?trace=1", strings.NewReader(reqBody))
	req.Header.Set("Authorization", "Bearer "+unboundKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("OpenAI-Organization", "org-123")
	req.Header.Set("X-Tokenmeter-Team", "search")
	req.Header.Set("x-tokenmeter-feature", "invoice-qa")
	req.Header.Set("X-Tokenmeter-Env", "prod")
	req.Header.Set("X-Tokenmeter-Cost-Center", "cc-42")
	req.Header.Set("X-Tokenmeter-Traffic", "user")
	req.Header.Set("X-Tokenmeter-Tag-Region", "eu-west")
	req.Header.Set("X-Tokenmeter-Workflow-Id", "ticket-4711")
	req.Header.Set("X-Tokenmeter-Prompt-Version", "invoice@v3")
	req.Header.Set("X-Tokenmeter-Unknown", "stripped too")
	resp, err := noCompression.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	// The client sees the upstream's answer unchanged.
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("status %d, body %q; want 200 and the upstream's body", resp.StatusCode, got)
	}
	for k, v := range map[string][]string{
		"X-Request-Id": {"req_8b3c1e"}, "Openai-Processing-Ms": {"312"}, "Set-Cookie": {"a=1", "b=2"}, "Content-Type": {"application/json"},
	} {
		if !reflect.DeepEqual(resp.Header.Values(k), v) {
			t.Errorf("response header %s = %q, want %q", k, resp.Header.Values(k), v)
		}
	}
	// The upstream sees the client's request unchanged, without the attribution headers.
	up := rc.last(t)
	if up.method != "POST" || up.path != "/v1/chat/completions" || up.query != "trace=1" || string(up.body) != reqBody {
		t.Errorf("upstream saw %s %s?%s %q", up.method, up.path, up.query, up.body)
	}
	for k, v := range map[string]string{"Authorization": "Bearer " + unboundKey, "Openai-Organization": "org-123", "Content-Type": "application/json"} {
		if up.header.Get(k) != v {
			t.Errorf("upstream header %s = %q, want %q", k, up.header.Get(k), v)
		}
	}
	for k := range up.header {
		if strings.HasPrefix(k, "X-Tokenmeter") {
			t.Errorf("upstream saw header %s", k)
		}
	}

	want := h.want(event.Usage{
		ID: "proxy-openai-chatcmpl-CNqXK2XtM2xZ6mbS1WzAhsUG7tD9c", Provider: "openai", Model: "o4-mini-2025-04-16", Operation: "chat",
		Usage:       event.Tokens{Input: 2006, Output: 1300, CachedInput: 1920, Reasoning: 1024},
		ServiceTier: "flex", ResponseID: "chatcmpl-CNqXK2XtM2xZ6mbS1WzAhsUG7tD9c",
		Tags: map[string]string{"team": "search", "feature": "invoice-qa", "env": "prod", "cost_center": "cc-42",
			"traffic": "user", "region": "eu-west"},
		WorkflowID: "ticket-4711", PromptVersion: "invoice@v3",
	})
	if rows := h.events(1); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
	if n := h.outcome("emitted"); n != 1 {
		t.Errorf("emitted = %v, want 1", n)
	}
}

// streamUpstream serves body as server-sent events, one event per write, and waits for step
// after each: the test proves each event reached the client before the next one was even
// written.
func streamUpstream(rc *recorder, body []byte, step <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		for _, ev := range strings.SplitAfter(string(body), "\n\n") {
			if ev == "" {
				continue
			}
			io.WriteString(w, ev)
			w.(http.Flusher).Flush()
			select {
			case <-step:
			case <-r.Context().Done():
				return
			}
		}
	}
}

// readStream reads the events of resp one by one, releasing the upstream's next event only
// after the previous one arrived, and returns the bytes read.
func readStream(t *testing.T, resp *http.Response, step chan<- struct{}) []byte {
	t.Helper()
	var got bytes.Buffer
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		got.WriteString(line)
		if err == io.EOF {
			return got.Bytes()
		}
		if err != nil {
			// Seen once in CI ("unexpected EOF"), not reproduced in 500 runs since: say
			// where the stream broke, for the next time.
			t.Fatalf("read the proxied stream after %d bytes: %v; read so far:\n%s", got.Len(), err, got.Bytes())
		}
		if line == "\n" { // an event is complete: let the upstream write the next
			select {
			case step <- struct{}{}:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream did not ask for the next event")
			}
		}
	}
}

func TestOpenAIChatStream(t *testing.T) {
	body := fixture(t, "openai_chat_stream.sse")
	var rc recorder
	step := make(chan struct{})
	h := newHarness(t, streamUpstream(&rc, body, step))
	req, _ := http.NewRequest("POST", h.srv.URL+"/openai/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}`))
	req.Header.Set("Authorization", "Bearer "+unboundKey)
	req.Header.Set("X-Tokenmeter-Team", "search")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := readStream(t, resp, step); !bytes.Equal(got, body) {
		t.Fatalf("the client read\n%s\nwant\n%s", got, body)
	}
	want := h.want(event.Usage{
		ID: "proxy-openai-chatcmpl-CNqYbT1pq4bXhdmB8mJ7Kx2wDq1Zr", Provider: "openai", Model: "gpt-4o-2024-08-06", Operation: "chat",
		Usage: event.Tokens{Input: 1536, Output: 3, CachedInput: 1280}, ServiceTier: "standard",
		ResponseID: "chatcmpl-CNqYbT1pq4bXhdmB8mJ7Kx2wDq1Zr", Tags: map[string]string{"team": "search"},
	})
	if rows := h.events(1); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
}

// The API key's binding decides the team and cost centre; a header cannot override them, but
// can add what the binding leaves open.
func TestAnthropicStreamBoundKey(t *testing.T) {
	body := fixture(t, "anthropic_stream.sse")
	var rc recorder
	step := make(chan struct{})
	h := newHarness(t, streamUpstream(&rc, body, step))
	req, _ := http.NewRequest("POST", h.srv.URL+"/anthropic/v1/messages",
		strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`))
	req.Header.Set("X-Api-Key", boundKey)
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("X-Tokenmeter-Team", "search")
	req.Header.Set("X-Tokenmeter-Feature", "greeting")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := readStream(t, resp, step); !bytes.Equal(got, body) {
		t.Fatalf("the client read\n%s\nwant\n%s", got, body)
	}
	if up := rc.last(t); up.path != "/v1/messages" || up.header.Get("X-Api-Key") != boundKey || up.header.Get("Anthropic-Version") != "2023-06-01" {
		t.Errorf("upstream saw %s with headers %v", up.path, up.header)
	}
	want := h.want(event.Usage{
		ID: "proxy-anthropic-msg_01HCDu5LRGeP2o7s2xGmxyx8", Provider: "anthropic", Model: "claude-haiku-4-5-20251001", Operation: "chat",
		Usage: event.Tokens{Input: 2073, Output: 15, CachedInput: 2048}, ServiceTier: "priority",
		ResponseID: "msg_01HCDu5LRGeP2o7s2xGmxyx8",
		Tags:       map[string]string{"team": "payments", "cost_center": "cc-7", "feature": "greeting"},
	})
	if rows := h.events(1); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
	if n := testutil.ToFloat64(h.proxy.metrics.droppedTags); n != 1 {
		t.Errorf("dropped tags = %v, want 1 (the overridden team)", n)
	}
}

// Errors pass through unchanged and emit nothing; so do paths that carry no usage.
func TestPassThrough(t *testing.T) {
	var rc recorder
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		switch r.URL.Path {
		case "/v1/chat/completions":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "20")
			w.Header().Set("X-Ratelimit-Remaining-Requests", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
		case "/v1/models":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}`)
		case "/openai/deployments/gpt4o/chat/completions":
			if r.URL.RawQuery != "api-version=2024-10-21" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"chatcmpl-azure-1","model":"gpt-4o-2024-11-20","usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	resp, err := http.Post(h.srv.URL+"/openai/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "20" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" ||
		string(got) != `{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}` {
		t.Errorf("got %d %v %q", resp.StatusCode, resp.Header, got)
	}
	resp, err = http.Get(h.srv.URL + "/openai/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != `{"object":"list","data":[{"id":"gpt-4o","object":"model"}]}` {
		t.Errorf("models: %d %q", resp.StatusCode, got)
	}
	// A route to an upstream with a base path (Azure OpenAI deployments), its own provider
	// name, and the query string kept.
	resp, err = http.Post(h.srv.URL+"/azure/chat/completions?api-version=2024-10-21", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("azure: status %d", resp.StatusCode)
	}
	want := h.want(event.Usage{
		ID: "proxy-azure-chatcmpl-azure-1", Provider: "azure", Model: "gpt-4o-2024-11-20", Operation: "chat",
		Usage: event.Tokens{Input: 12, Output: 3}, ResponseID: "chatcmpl-azure-1",
	})
	if rows := h.events(1); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
	if n := h.outcome("upstream_error"); n != 1 {
		t.Errorf("upstream_error = %v, want 1", n)
	}
	// The proxy's own endpoints are on its ops handler, not on the address its clients use.
	ops := httptest.NewServer(h.proxy.OpsHandler())
	defer ops.Close()
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		for base, want := range map[string]int{ops.URL: 200, h.srv.URL: 404} {
			resp, err = http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s%s: %d, want %d", base, path, resp.StatusCode, want)
			}
		}
	}
}

// A client accepting br and gzip gets gzip, byte for byte as the upstream sent it, and the
// proxy reads the usage through it.
func TestGzip(t *testing.T) {
	body := fixture(t, "anthropic.json")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(body)
	zw.Close()
	var rc recorder
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(zipped.Bytes())
	}))
	req, _ := http.NewRequest("POST", h.srv.URL+"/anthropic/v1/messages", strings.NewReader(`{}`))
	req.Header.Set("Accept-Encoding", "br, gzip;q=0.9, zstd")
	req.Header.Set("X-Api-Key", unboundKey)
	resp, err := noCompression.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, zipped.Bytes()) || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("the client got %d bytes (%s), want the upstream's %d gzip bytes", len(got), resp.Header.Get("Content-Encoding"), zipped.Len())
	}
	if ae := rc.last(t).header.Get("Accept-Encoding"); ae != "gzip" {
		t.Errorf("upstream Accept-Encoding = %q, want gzip", ae)
	}
	want := h.want(event.Usage{
		ID: "proxy-anthropic-msg_01XFDUDYJgAACzvnptvVoYEL", Provider: "anthropic", Model: "claude-sonnet-4-5-20250929", Operation: "chat",
		Usage:       event.Tokens{Input: 16210, Output: 356, CachedInput: 12000, CacheWrite: 4000, CacheWrite1h: 3000},
		ServiceTier: "standard", ResponseID: "msg_01XFDUDYJgAACzvnptvVoYEL",
	})
	if rows := h.events(1); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
}

// When NATS is down the proxy keeps serving; the events reach JetStream once it is back.
func TestPipelineDown(t *testing.T) {
	body := fixture(t, "openai_chat.json")
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	port := natstest.Port(t, h.ns)
	h.ns.Shutdown()
	h.ns.WaitForShutdown()
	for i := 0; i < 3; i++ {
		resp, err := http.Post(h.srv.URL+"/openai/v1/chat/completions", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("with NATS down: status %d, body %q", resp.StatusCode, got)
		}
	}
	// The proxy emits after the client has its answer, so the third emit may trail it.
	testkit.Eventually(t, 5*time.Second, "three events emitted", func() bool { return h.em.Stats().Emitted == 3 })
	if st := h.em.Stats(); st.Emitted != 3 || st.Published != 0 {
		t.Fatalf("emitter stats with NATS down: %+v", st)
	}
	h.ns = natstest.Start(t, h.dir, port)
	// The same response id three times is one event id: the pipeline counts it once; the
	// raw stream holds what the emitter sent.
	rows := h.events(3)
	for _, r := range rows {
		if r.ID != "proxy-openai-chatcmpl-CNqXK2XtM2xZ6mbS1WzAhsUG7tD9c" || r.Tokens.Input != 2006 {
			t.Fatalf("event %+v", r)
		}
	}
}

// A client that hangs up mid-stream: the Anthropic input tokens already reported are billed,
// so the event is emitted with status incomplete.
func TestClientGoneMidStream(t *testing.T) {
	body := fixture(t, "anthropic_stream.sse")
	var rc recorder
	step := make(chan struct{})
	h := newHarness(t, streamUpstream(&rc, body, step))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/anthropic/v1/messages", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			break // message_start arrived
		}
	}
	cancel()
	resp.Body.Close()
	want := h.want(event.Usage{
		ID: "proxy-anthropic-msg_01HCDu5LRGeP2o7s2xGmxyx8", Provider: "anthropic", Model: "claude-haiku-4-5-20251001", Operation: "chat",
		Usage: event.Tokens{Input: 2073, Output: 1, CachedInput: 2048}, ServiceTier: "priority", Status: "incomplete",
		ResponseID: "msg_01HCDu5LRGeP2o7s2xGmxyx8",
	})
	if rows := h.events(1); !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
}

func TestNoUsageAndUnreachable(t *testing.T) {
	var rc recorder
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		w.Header().Set("Content-Type", "text/event-stream")
		// A stream without stream_options.include_usage: nothing to meter.
		io.WriteString(w, "data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n")
	}))
	resp, err := http.Post(h.srv.URL+"/openai/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	testkit.Eventually(t, 5*time.Second, "no_usage counted", func() bool { return h.outcome("no_usage") == 1 })
	// The estimate is emitted after the outcome is counted (it failed CI-like runs 1 in 7).
	testkit.Eventually(t, 5*time.Second, "the stream's estimate emitted", func() bool { return h.em.Stats().Emitted == 1 })

	h.upstream.Close()
	resp, err = http.Post(h.srv.URL+"/openai/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Generic: the error would name the upstream's address.
	if want := `{"error":{"code":"upstream_unreachable","message":"tokenmeter proxy: the upstream could not be reached","type":"tokenmeter_proxy_error"}}` + "\n"; resp.StatusCode != http.StatusBadGateway || string(got) != want {
		t.Fatalf("unreachable upstream: %d %s, want 502 %s", resp.StatusCode, got, want)
	}
	if strings.Contains(string(got), strings.TrimPrefix(h.upstream.URL, "http://")) {
		t.Fatalf("the answer names the upstream: %s", got)
	}
	// The stream without usage is estimated (TestEscapedStreams); the request the upstream
	// never got is not.
	if st := h.em.Stats(); st.Emitted != 1 {
		t.Fatalf("emitted %d events, want 1", st.Emitted)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{
		Routes: []Route{
			{Prefix: "openai", Upstream: "https://api.openai.com", API: APIOpenAI},
			{Prefix: "/x", Upstream: "ftp://host", API: "cohere"},
			{Prefix: "/x", Upstream: "https://h", API: APIAnthropic},
			{Prefix: "/metrics", Upstream: "https://h", API: APIAnthropic},
		},
		MaxCapture: -1,
	}.Validate()
	want := []string{
		"emitter is nil",
		"max capture (-1) must be positive",
		`routes[0]: prefix "openai" must start with '/'`,
		`routes[1]: upstream "ftp://host" is not an http(s) URL`,
		`routes[1]: api "cohere" is not one of openai, anthropic`,
		`routes[2]: prefix "/x" is used twice`,
		`routes[3]: prefix "/metrics" is the proxy's own endpoint`,
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to contain %q", err, w)
		}
	}
}

func TestMeteredPath(t *testing.T) {
	for _, c := range []struct {
		api          API
		method, path string
		want         string
	}{
		{APIOpenAI, "POST", "/v1/chat/completions", "openai-chat/chat"},
		{APIOpenAI, "POST", "/v1/chat/completions/", "openai-chat/chat"},
		{APIOpenAI, "POST", "/v1/responses", "openai-responses/responses"},
		{APIOpenAI, "POST", "/v1/embeddings", "openai-chat/embeddings"},
		{APIOpenAI, "GET", "/v1/chat/completions", ""},
		{APIOpenAI, "POST", "/v1/responses/resp_1/cancel", ""},
		{APIOpenAI, "POST", "/v1/messages", ""},
		{APIAnthropic, "POST", "/v1/messages", "anthropic/chat"},
		{APIAnthropic, "POST", "/v1/messages/count_tokens", ""},
		{APIAnthropic, "POST", "/v1/chat/completions", ""},
	} {
		f, op, ok := meteredPath(c.api, c.method, c.path)
		got := ""
		if ok {
			got = f.String() + "/" + op
		}
		if got != c.want {
			t.Errorf("meteredPath(%s, %s, %s) = %q, want %q", c.api, c.method, c.path, got, c.want)
		}
	}
}

func TestNarrowEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"gzip, deflate, br, zstd": "gzip",
		"br;q=1.0, GZIP;q=0.5":    "gzip",
		"br, gzip;q=0":            "identity",
		"br, zstd":                "identity",
		"":                        "",
	} {
		h := http.Header{}
		if in != "" {
			h.Set("Accept-Encoding", in)
		}
		narrowEncoding(h)
		if got := h.Get("Accept-Encoding"); got != want {
			t.Errorf("narrowEncoding(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEventID(t *testing.T) {
	if got := eventID("openai", "chatcmpl-1"); got != "proxy-openai-chatcmpl-1" {
		t.Errorf("eventID = %q", got)
	}
	long := strings.Repeat("r", 200)
	sum := sha256.Sum256([]byte(long))
	if got, want := eventID("openai", long), "proxy-openai-sha256-"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("eventID(long) = %q, want %q", got, want)
	}
	a, b := eventID("anthropic", ""), eventID("anthropic", "")
	if a == b || !strings.HasPrefix(a, "proxy-anthropic-") || len(a) != len("proxy-anthropic-")+32 {
		t.Errorf("random ids %q, %q", a, b)
	}
}

func TestRun(t *testing.T) {
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p, err := New(Config{Addr: "127.0.0.1:0", Emitter: h.em, Routes: []Route{{Prefix: "/openai", Upstream: h.upstream.URL, API: APIOpenAI}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testkit.Eventually(t, 5*time.Second, "the proxy listens", func() bool { return p.Addr() != "" })
	resp, err := http.Get("http://" + p.Addr() + "/openai/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if err := (&Proxy{cfg: Config{Addr: "256.0.0.1:1"}}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen on 256.0.0.1:1") {
		t.Errorf("bad address: %v", err)
	}
}
