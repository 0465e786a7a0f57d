package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
)

// counted is an upstream that counts the requests it gets and answers a chat completion.
func counted(n *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","model":"gpt-4o","usage":{"prompt_tokens":12,"completion_tokens":3}}`)
	})
}

func send(t *testing.T, method, url string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(`{"model":"gpt-4o"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Encoded dot segments would take a request outside the route's base URL on an upstream that
// decodes them: they are refused, whatever their spelling, and never forwarded.
func TestDotSegmentsRefused(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, counted(&calls))
	const openai = `{"error":{"code":"invalid_path","message":"tokenmeter proxy: the path has a '.' or '..' segment, plain or percent-encoded; it is not forwarded","type":"invalid_request_error"}}` + "\n"
	const anthropic = `{"error":{"message":"tokenmeter proxy: the path has a '.' or '..' segment, plain or percent-encoded; it is not forwarded","type":"invalid_request_error"},"type":"error"}` + "\n"
	for path, want := range map[string]string{
		"/openai/v1/%2e%2e/admin":              openai,
		"/openai/v1/%2E%2E/admin":              openai,
		"/openai/v1/%2e./admin":                openai,
		"/openai/v1/.%2E/admin":                openai,
		"/openai/..%2fadmin":                   openai,
		"/openai/..%2Fadmin":                   openai,
		"/openai/v1/..%5cadmin":                openai,
		"/openai/v1/%252e%252e/admin":          openai,
		"/openai/v1/%2e/chat/completions":      openai,
		"/azure/%2e%2e/%2e%2e/other/deploy":    openai,
		"/anthropic/v1/%2e%2e/organizations/x": anthropic,
	} {
		// Sent as written: the client must not clean the path first.
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest || string(body) != want {
			t.Errorf("%s: %d %s, want 400 %s", path, resp.StatusCode, body, want)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the upstream got %d requests, want none", n)
	}
	// A dot inside a segment is a name, not a segment.
	if status, body := send(t, "GET", h.srv.URL+"/openai/v1/models/gpt-4.1..mini"); status != 200 {
		t.Errorf("dots inside a segment: %d %s, want 200", status, body)
	}
}

// An upstream that takes the request and never answers is given up on after the response
// header timeout, with a generic 502 that names no address.
func TestUpstreamHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	h := newHarnessWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), func(c *Config) { c.ResponseHeaderTimeout = 100 * time.Millisecond })
	defer close(release)
	status, body := send(t, "POST", h.srv.URL+"/openai/v1/chat/completions")
	const want = `{"error":{"code":"upstream_timeout","message":"tokenmeter proxy: the upstream did not answer in time","type":"tokenmeter_proxy_error"}}` + "\n"
	if status != http.StatusBadGateway || body != want {
		t.Errorf("%d %s, want 502 %s", status, body, want)
	}
	status, body = send(t, "POST", h.srv.URL+"/anthropic/v1/messages")
	const wantAnthropic = `{"error":{"message":"tokenmeter proxy: the upstream did not answer in time","type":"api_error"},"type":"error"}` + "\n"
	if status != http.StatusBadGateway || body != wantAnthropic {
		t.Errorf("anthropic: %d %s, want 502 %s", status, body, wantAnthropic)
	}
}

// capTeam puts a hard cap on team payments under policy into the harness's budget bucket
// and returns the enforcer watching it.
func capTeam(t *testing.T, h *harness, policy string) *budget.Enforcer {
	t.Helper()
	return enforce(t, h, "payments-monthly", kv.Budget{Name: "payments-monthly", Scope: "team=payments", PeriodStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), LimitUSD: "100", SpentUSD: "100.5", State: kv.StateHardCapped, Policy: policy},
		map[string]string{"team": "payments"}, "")
}

// enforce puts rec under key into the harness's budget bucket and returns an enforcer
// watching it, once it caps the tags and workflow given.
func enforce(t *testing.T, h *harness, key string, rec kv.Budget, tags map[string]string, workflow string) *budget.Enforcer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	enf := budget.NewEnforcer(func() time.Time { return h.now }, nil)
	if err := enf.Watch(ctx, h.js); err != nil {
		t.Fatal(err)
	}
	bucket, err := h.js.KeyValue(ctx, kv.Budgets)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(rec)
	if _, err := bucket.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "cap loaded", func() bool { _, o := enf.Over(tags, workflow); return o })
	return enf
}

// A call of a team over its hard cap is refused before it is forwarded — never paid for —
// in the provider's error shape, whether the team comes from a header (in any spelling) or
// from the API key's binding. Calls that are not metered pass.
func TestBudgetCapRefusesBeforeForwarding(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, counted(&calls))
	h.proxy.cfg.Budgets = capTeam(t, h, kv.PolicyRefuse) // the bucket is the harness's NATS's
	const reason = `tokenmeter proxy: team \"payments\" is over the hard cap of budget \"payments-monthly\": 100.5 USD spent of 100 USD since 2026-11-01; its events are refused until 2099-01-01 or until the budget is raised`
	openai := `{"error":{"code":"budget_exceeded","message":"` + reason + `","type":"insufficient_quota"}}` + "\n"
	anthropic := `{"error":{"message":"` + reason + `","type":"rate_limit_error"},"type":"error"}` + "\n"
	for _, c := range []struct {
		path   string
		header []string
		want   string
	}{
		{"/openai/v1/chat/completions", []string{HeaderTeam, "Payments "}, openai},
		{"/openai/v1/chat/completions", []string{"Authorization", "Bearer " + boundKey}, openai},
		{"/anthropic/v1/messages", []string{"X-Api-Key", boundKey}, anthropic},
		{"/anthropic/v1/messages", []string{HeaderTeam, "PAYMENTS"}, anthropic},
	} {
		if status, body := send(t, "POST", h.srv.URL+c.path, c.header...); status != http.StatusTooManyRequests || body != c.want {
			t.Errorf("%s %v: %d %s, want 429 %s", c.path, c.header, status, body, c.want)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the upstream got %d calls, want none", n)
	}
	if status, _ := send(t, "GET", h.srv.URL+"/openai/v1/models", HeaderTeam, "payments"); status != 200 || calls.Load() != 1 {
		t.Errorf("unmetered call: %d, %d upstream calls; want 200, 1", status, calls.Load())
	}
	if status, _ := send(t, "POST", h.srv.URL+"/openai/v1/chat/completions", HeaderTeam, "search"); status != 200 || calls.Load() != 2 {
		t.Errorf("another team: %d, %d upstream calls; want 200, 2", status, calls.Load())
	}
	if rows := h.events(1); rows[0].Team != "search" {
		t.Errorf("the one event is team %q's, want search's", rows[0].Team)
	}
}

// Under the flag policy the call goes through and its event carries the flag.
func TestBudgetCapFlags(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, counted(&calls))
	h.proxy.cfg.Budgets = capTeam(t, h, kv.PolicyFlag)
	if status, body := send(t, "POST", h.srv.URL+"/openai/v1/chat/completions", HeaderTeam, "payments"); status != 200 {
		t.Fatalf("%d %s, want 200", status, body)
	}
	want := []batch.Tag{{Key: kv.FlagTag, Value: "payments-monthly"}}
	if rows := h.events(1); !reflect.DeepEqual(rows[0].ExtraTags, want) {
		t.Errorf("event tags %v, want %v", rows[0].ExtraTags, want)
	}
}

// slowBody opens a connection to the proxy and sends a chat completion announcing a body of
// 16,000,000 bytes, and one byte of it.
func slowBody(t *testing.T, h *harness) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: 16000000\r\n\r\n{")
	return conn
}

// answerOn reads the answer to the request sent on conn.
func answerOn(t *testing.T, conn net.Conn) (int, string, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
}

// Bodies announced large and sent one byte at a time are bounded as at the collector: at
// most MaxBodies are read at once (the others are answered 503 unread), and one that does not
// arrive within BodyTimeout is answered 408; nothing reaches the upstream whole.
func TestProxySlowBodies(t *testing.T) {
	var calls atomic.Int32
	h := newHarnessWith(t, counted(&calls), func(c *Config) { c.MaxBodies, c.BodyTimeout = 2, 3*time.Second })
	held := []net.Conn{slowBody(t, h), slowBody(t, h)}
	// A request reaches its route once its body holds a slot. Until both do, another request
	// could take a slot before them, however late it was sent: a busy machine runs the
	// connections' goroutines in any order.
	metered := h.proxy.metrics.requests.WithLabelValues("/openai", "true")
	testkit.Eventually(t, 10*time.Second, "every slot held", func() bool { return testutil.ToFloat64(metered) == 2 })
	const busy = `{"error":{"code":"proxy_busy","message":"tokenmeter proxy: 2 request bodies are being read, the limit: send this request again later","type":"tokenmeter_proxy_error"}}` + "\n"
	// A complete request is refused too, metered or not.
	if status, body := send(t, "POST", h.srv.URL+"/openai/v1/files"); status != http.StatusServiceUnavailable || body != busy {
		t.Errorf("complete request: %d %s, want 503 %s", status, body, busy)
	}
	for i := 0; i < 2; i++ {
		if status, retry, body := answerOn(t, slowBody(t, h)); status != http.StatusServiceUnavailable || retry != "1" || body != busy {
			t.Errorf("beyond the bound: %d (Retry-After %q) %s, want 503 (1) %s", status, retry, body, busy)
		}
	}
	const late = `{"error":{"code":"body_timeout","message":"tokenmeter proxy: the request body did not arrive within 3s","type":"invalid_request_error"}}` + "\n"
	for _, conn := range held {
		if status, _, body := answerOn(t, conn); status != http.StatusRequestTimeout || body != late {
			t.Errorf("held: %d %s, want 408 %s", status, body, late)
		}
	}
	if n := len(streamtest.Messages(t, h.js, stream.Raw)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

// A header tag holding an invisible or direction-changing character would make the event
// invalid, and the call unmetered: the tag is dropped, the call is metered.
func TestInvisibleHeaderTagDropped(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, counted(&calls))
	if status, body := send(t, "POST", h.srv.URL+"/openai/v1/chat/completions", HeaderTeam, "pay\u200bments", HeaderFeature, "\u202echat"); status != 200 {
		t.Fatalf("%d %s, want 200", status, body)
	}
	if rows := h.events(1); rows[0].Team != "" || rows[0].Feature != "" {
		t.Errorf("event team %q, feature %q; want both dropped", rows[0].Team, rows[0].Feature)
	}
	if got := testutil.ToFloat64(h.proxy.metrics.droppedTags); got != 2 {
		t.Errorf("dropped tags = %v, want 2", got)
	}
}

// cancelFirst is http.Transport as it answers when it sees the request's context canceled
// before the forwarded body's read error. A late body cancels the context inside the read
// that fails, before that read returns; which of the two the transport sees first is a race
// between its goroutines, which this makes certain.
type cancelFirst struct{ http.RoundTripper }

func (c cancelFirst) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.RoundTripper.RoundTrip(r)
	if err != nil && r.Context().Err() != nil {
		return nil, context.Cause(r.Context())
	}
	return resp, err
}

// A late body is answered 408 whatever the transport reports: its deadline cancels the
// request's context as a client hanging up does, and the transport may say only that. It was
// answered 200 with an empty body, taken for a client gone, whenever the transport saw the
// cancellation first (TestProxySlowBodies, on a busy machine).
func TestLateBodyIsNoClientGone(t *testing.T) {
	var calls atomic.Int32
	h := newHarnessWith(t, counted(&calls), func(c *Config) {
		c.BodyTimeout = 100 * time.Millisecond
		c.Transport = cancelFirst{http.DefaultTransport.(*http.Transport).Clone()}
	})
	const late = `{"error":{"code":"body_timeout","message":"tokenmeter proxy: the request body did not arrive within 100ms","type":"invalid_request_error"}}` + "\n"
	if status, _, body := answerOn(t, slowBody(t, h)); status != http.StatusRequestTimeout || body != late {
		t.Errorf("%d %s, want 408 %s", status, body, late)
	}
	for reason, want := range map[string]float64{"body_timeout": 1, "client_gone": 0} {
		if got := testutil.ToFloat64(h.proxy.metrics.upstreamErrors.WithLabelValues(reason)); got != want {
			t.Errorf("upstream errors %s = %v, want %v", reason, got, want)
		}
	}
}

// A client that hangs up in the middle of its body is counted gone, not as an unreachable
// upstream, whichever error the transport reports: the write of the body failing, or the
// cancellation.
func TestClientGoneMidBody(t *testing.T) {
	for name, transport := range map[string]http.RoundTripper{
		"transport":    http.DefaultTransport.(*http.Transport).Clone(),
		"cancel first": cancelFirst{http.DefaultTransport.(*http.Transport).Clone()},
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			h := newHarnessWith(t, counted(&calls), func(c *Config) { c.Transport = transport })
			conn := slowBody(t, h)
			// Hang up once the upstream has the request, so that the body is being forwarded.
			testkit.Eventually(t, 10*time.Second, "request forwarded", func() bool { return calls.Load() == 1 })
			conn.Close()
			errs := h.proxy.metrics.upstreamErrors
			testkit.Eventually(t, 10*time.Second, "call ended", func() bool {
				return testutil.CollectAndCount(errs) > 0
			})
			for reason, want := range map[string]float64{"client_gone": 1, "unreachable": 0, "body_timeout": 0} {
				if got := testutil.ToFloat64(errs.WithLabelValues(reason)); got != want {
					t.Errorf("upstream errors %s = %v, want %v", reason, got, want)
				}
			}
		})
	}
}
