package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

func TestInjectStreamUsage(t *testing.T) {
	f := func(body string, limit int64, want string, wantInjected bool) {
		t.Helper()
		r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
		injected, err := injectStreamUsage(r, limit)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r.Body)
		if injected != wantInjected || string(got) != want || (injected && r.ContentLength != int64(len(want))) {
			t.Errorf("injectStreamUsage(%s) = %v, body %s (length %d); want %v, %s", body, injected, got, r.ContentLength, wantInjected, want)
		}
	}
	f(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}`, 1000,
		`{"messages":[{"role":"user","content":"Hi"}],"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`, true)
	f(`{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false}}`, 1000,
		`{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}`, true)
	f(`{"stream":true,"stream_options":null}`, 1000, `{"stream":true,"stream_options":{"include_usage":true}}`, true)
	// Left alone, byte for byte.
	for _, body := range []string{
		`{"model":"gpt-4o",  "stream":true, "stream_options":{"include_usage":false}}`,
		`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"gpt-4o","stream":false}`,
		`{"model":"gpt-4o"}`,
		`{"stream":true,"stream_options":"x"}`,
		`[1,2]`,
		`not json`,
		``,
	} {
		f(body, 1000, body, false)
	}
	long := `{"stream":true,"pad":"` + strings.Repeat("x", 100) + `"}`
	f(long, 50, long, false)
}

func TestInjectedStreamIsMetered(t *testing.T) {
	body := fixture(t, "openai_chat_stream.sse")
	var rc recorder
	h := newHarnessWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(body)
	}), func(c *Config) { c.InjectStreamUsage = true })
	resp, err := http.Post(h.srv.URL+"/openai/v1/chat/completions", "application/json", strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := string(rc.last(t).body); got != `{"messages":[],"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}` {
		t.Errorf("upstream got %s", got)
	}
	rows := h.events(1)
	want := h.want(event.Usage{
		ID: "proxy-openai-chatcmpl-CNqYbT1pq4bXhdmB8mJ7Kx2wDq1Zr", Provider: "openai", Model: "gpt-4o-2024-08-06", Operation: "chat",
		Usage: event.Tokens{Input: 1536, Output: 3, CachedInput: 1280}, ServiceTier: "standard",
		ResponseID: "chatcmpl-CNqYbT1pq4bXhdmB8mJ7Kx2wDq1Zr",
	})
	if !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("event\n %+v\nwant\n %+v", rows[0], want)
	}
	if n := testutil.ToFloat64(h.proxy.metrics.injected); n != 1 {
		t.Errorf("injected = %v", n)
	}
}
