package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

// injectStreamUsage makes a streamed Chat Completions request ask for its usage: OpenAI sends
// the usage of a stream only when the request sets stream_options.include_usage, and a proxy
// that cannot see the usage cannot meter the call. The request body gains
// "stream_options":{"include_usage":true}, and the client receives one more chunk at the end
// of the stream (empty choices, the usage), which the OpenAI SDKs expect whenever the option
// is set. A request that sets include_usage itself, true or false, is left alone, as is any
// body that is not a JSON object with "stream":true or is larger than limit. It reports
// whether it changed the request.
func injectStreamUsage(r *http.Request, limit int64) (bool, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength > limit {
		return false, nil
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return false, err
	}
	// Whatever happens below, the upstream gets every byte the client sent.
	rest := r.Body
	r.Body = readCloser{io.MultiReader(bytes.NewReader(head), rest), rest}
	if int64(len(head)) > limit {
		return false, nil
	}
	var req map[string]json.RawMessage
	if json.Unmarshal(head, &req) != nil || string(bytes.TrimSpace(req["stream"])) != "true" {
		return false, nil
	}
	opts := map[string]json.RawMessage{}
	if raw, ok := req["stream_options"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		if json.Unmarshal(raw, &opts) != nil {
			return false, nil
		}
	}
	if _, set := opts["include_usage"]; set {
		return false, nil
	}
	opts["include_usage"] = json.RawMessage("true")
	if req["stream_options"], err = json.Marshal(opts); err != nil {
		return false, nil
	}
	body, err := json.Marshal(req)
	if err != nil {
		return false, nil
	}
	r.Body = readCloser{bytes.NewReader(body), rest}
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	return true, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
