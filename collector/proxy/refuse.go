package proxy

// What the proxy answers itself, in the error shape of the route's API so that the client's
// SDK reads it as it reads the provider's own errors: OpenAI's
// {"error":{"message","type","code"}} and Anthropic's {"type":"error","error":{"type","message"}}.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// refusal is one answer of the proxy's own.
type refusal struct {
	status int
	// code is OpenAI's error code; kind the error type (OpenAI's type, Anthropic's
	// error.type).
	code, kind, message string
	retryAfter          string
}

// answer writes ref in the shape of api (OpenAI's for an unknown route).
func answer(w http.ResponseWriter, api API, ref refusal) {
	var body any
	if api == APIAnthropic {
		body = map[string]any{"type": "error", "error": map[string]string{"type": ref.kind, "message": ref.message}}
	} else {
		body = map[string]any{"error": map[string]string{"message": ref.message, "type": ref.kind, "code": ref.code}}
	}
	data, _ := json.Marshal(body) // maps of strings: cannot fail
	w.Header().Set("Content-Type", "application/json")
	if ref.retryAfter != "" {
		w.Header().Set("Retry-After", ref.retryAfter)
	}
	w.WriteHeader(ref.status)
	_, _ = w.Write(append(data, '\n'))
}

// apiOf is the API of the route r's path falls under, OpenAI when none.
func (p *Proxy) apiOf(r *http.Request) API {
	for _, rt := range p.routes {
		if r.URL.Path == rt.Prefix || strings.HasPrefix(r.URL.Path, rt.Prefix+"/") {
			return rt.API
		}
	}
	return APIOpenAI
}

// dotSegments says whether a request path holds a "." or ".." segment once decoded — once
// or twice, with '/' or '\' as separators — such as /openai/v1/%2e%2e/admin or
// /openai/..%2fadmin. The proxy refuses them: forwarded, they would reach paths of the
// upstream outside the route's base URL, depending on how the upstream decodes them.
func dotSegments(path string) bool {
	if hasDotSegment(path) {
		return true
	}
	if again, err := url.PathUnescape(path); err == nil && again != path {
		return hasDotSegment(again)
	}
	return false
}

func hasDotSegment(path string) bool {
	for _, seg := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
