package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// FuzzAttribute checks that whatever attribution headers a client sends, the tags the proxy
// puts on an event are valid v1 tags, within the limit, and the binding's tags always win.
func FuzzAttribute(f *testing.F) {
	b, err := ParseBindings([]byte(`{"keys":[{"sha256":"` + hash(boundKey) + `","tags":{"team":"payments","cost_center":"cc-7"}}]}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("X-Tokenmeter-Team", "search", "Bearer "+boundKey)
	f.Add("X-Tokenmeter-Tag-Region", "eu\x00", "")
	f.Add("X-Tokenmeter-Traffic", "user", "Bearer x")
	f.Add("X-Tokenmeter-Tag-", "v", "")
	f.Add("X-Tokenmeter-Workflow-Id", "\xff", "")
	f.Fuzz(func(t *testing.T, name, value, auth string) {
		h := http.Header{}
		h[http.CanonicalHeaderKey(name)] = []string{value}
		h["X-Tokenmeter-Tag-"+http.CanonicalHeaderKey(strings.TrimPrefix(name, "x"))] = []string{value}
		h.Set("Authorization", auth)
		a := attribute(h, b)
		if len(a.tags) > event.DefaultLimits.MaxTags {
			t.Fatalf("%d tags", len(a.tags))
		}
		u := event.Usage{ID: "e", Provider: "p", Model: "m", Tags: a.tags, WorkflowID: a.workflowID, PromptVersion: a.promptVersion}
		now := u.Time
		u.Normalize(now)
		if err := u.Validate(u.Time, event.DefaultLimits); err != nil {
			t.Fatalf("attribute(%q: %q) gives an invalid event: %v", name, value, err)
		}
		if _, ok := b.Lookup(h); ok && (a.tags["team"] != "payments" || a.tags["cost_center"] != "cc-7") {
			t.Fatalf("a header overrode the binding: %v", a.tags)
		}
	})
}

// FuzzParseBindings checks that any bindings file either loads with only valid tags or is
// refused with an error, never a panic.
func FuzzParseBindings(f *testing.F) {
	f.Add([]byte(`{"keys":[{"sha256":"` + hash("k") + `","name":"n","tags":{"team":"a"}}]}`))
	f.Add([]byte(`{"keys":[{"sha256":"zz","tags":{}}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBindings(data)
		if err != nil {
			return
		}
		for _, bd := range b.byHash {
			for k, v := range bd.Tags {
				if err := checkTag(k, v); err != nil {
					t.Fatalf("loaded an invalid tag: %v", err)
				}
			}
		}
	})
}

// FuzzInjectStreamUsage checks injectStreamUsage's contract on any body: the upstream gets the
// client's bytes unchanged unless the request was changed; a changed request is a JSON object
// asking for stream usage, with every other member the client sent, and a Content-Length that
// matches it.
func FuzzInjectStreamUsage(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}`,
		`{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false}}`,
		`{"stream":true,"stream_options":null}`,
		`{"stream":true,"stream_options":{"include_usage":false}}`,
		`{"stream":true,"stream_options":"x"}`,
		`{"stream":true,"a":1,"a":2}`,
		`{"stream": true , "x":"\u2028"}`,
		`[{"stream":true}]`,
		`{"stream":true`,
		``,
	} {
		f.Add([]byte(s))
	}
	const limit = 4096
	f.Fuzz(func(t *testing.T, body []byte) {
		r, _ := http.NewRequest("POST", "http://proxy/v1/chat/completions", bytes.NewReader(body))
		injected, err := injectStreamUsage(r, limit)
		if err != nil {
			t.Fatalf("error %v reading an in-memory body", err)
		}
		out, err := io.ReadAll(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !injected {
			if !bytes.Equal(out, body) {
				t.Fatalf("not injected, but the body changed:\n%q\n->\n%q", body, out)
			}
			return
		}
		if r.ContentLength != int64(len(out)) {
			t.Fatalf("Content-Length %d for a body of %d bytes", r.ContentLength, len(out))
		}
		var in, got map[string]json.RawMessage
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("injected into a body that is not a JSON object: %v", err)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("the injected body is not a JSON object: %v\n%s", err, out)
		}
		var opts map[string]json.RawMessage
		if err := json.Unmarshal(got["stream_options"], &opts); err != nil || string(opts["include_usage"]) != "true" {
			t.Fatalf("stream_options %s, want include_usage true", got["stream_options"])
		}
		for k, v := range in {
			if k != "stream_options" && !equalJSON(v, got[k]) {
				t.Fatalf("member %q changed: %s -> %s", k, v, got[k])
			}
		}
		if len(got) != len(in) && !(len(got) == len(in)+1 && in["stream_options"] == nil) {
			t.Fatalf("%d members in, %d out", len(in), len(got))
		}
	})
}

func equalJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// lastRequest is the upstream transport of FuzzRewrite: it records the request it would send.
type lastRequest struct{ out *http.Request }

func (rc *lastRequest) RoundTrip(r *http.Request) (*http.Response, error) {
	rc.out = r
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

type discard struct{}

func (discard) Emit(event.Usage) error { return nil }

// FuzzRewrite sends any request path through the proxy: whatever reaches the upstream goes to
// the route's upstream host, under its base path, with no dot segment however encoded, and
// without X-Tokenmeter- headers.
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{
		"/openai/v1/chat/completions", "/azure/chat/completions?api-version=2024-10-21", "/anthropic/v1/messages",
		"/openai/v1/%2e%2e/admin", "/openai/..%2fadmin", "/azure/%252e%252e/x", "/openai//v1", "/openai/v1/a%2Fb",
		"/openai", "/openaix/v1", "/azure/..%5c..%5cadmin", "/openai/v1/models/gpt-4.1..mini",
	} {
		f.Add(s)
	}
	rc := &lastRequest{}
	p, err := New(Config{
		Routes: []Route{
			{Prefix: "/openai", Upstream: "https://api.openai.example", API: APIOpenAI},
			{Prefix: "/azure", Upstream: "https://acme.azure.example/openai/deployments/gpt4o", API: APIOpenAI},
			{Prefix: "/anthropic", Upstream: "https://api.anthropic.example/", API: APIAnthropic},
		},
		Emitter: discard{}, Transport: rc,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: proxy\r\nX-Tokenmeter-Team: a\r\n\r\n")))
		if err != nil {
			return // not a request line a server would take
		}
		rc.out = nil
		p.ServeHTTP(httptest.NewRecorder(), r)
		out := rc.out
		if out == nil {
			return
		}
		base := map[string]string{"api.openai.example": "", "acme.azure.example": "/openai/deployments/gpt4o", "api.anthropic.example": ""}
		prefix, ok := base[out.URL.Host]
		if !ok || out.URL.Scheme != "https" {
			t.Fatalf("%q went to %s://%s", target, out.URL.Scheme, out.URL.Host)
		}
		if !strings.HasPrefix(out.URL.Path, prefix+"/") && out.URL.Path != prefix {
			t.Fatalf("%q went to %s, outside %s", target, out.URL.Path, prefix)
		}
		if dotSegments(out.URL.Path) || dotSegments(out.URL.EscapedPath()) {
			t.Fatalf("%q went to %s (%s), with a dot segment", target, out.URL.Path, out.URL.EscapedPath())
		}
		for k := range out.Header {
			if strings.HasPrefix(k, HeaderPrefix) {
				t.Fatalf("%q forwarded header %s", target, k)
			}
		}
	})
}
