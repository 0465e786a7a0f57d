package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// counting is an Acceptor that accepts every event and counts them.
type counting struct{ events int }

func (c *counting) Accept(_ context.Context, events []event.Usage) ([]event.Rejection, error) {
	c.events += len(events)
	return nil, nil
}

// FuzzBody sends arbitrary bodies — protobuf or JSON, plain or gzip — through the handler
// with small limits: it must never panic, must answer one of the statuses it documents, and
// must never hand the acceptor more usage spans than MaxEvents nor decode a request of more
// spans than MaxSpans.
func FuzzBody(f *testing.F) {
	for _, name := range []string{"testdata/genai_traces.json", "testdata/anthropic_sdk_traces.json"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, true, false)
		f.Add(data, true, true)
	}
	spans := bytes.Repeat([]byte{0x12, 0x00}, 20)
	scope := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), spans)
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), scope), false, true)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{},{},{},{},{},{},{},{},{},{}]}]}]}`), true, false)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"sp\u0061ns":[{},{},{},{},{},{},{},{},{},{}]}]}]}`), true, false)
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff}, false, false)
	f.Add([]byte("not gzip"), false, true)
	const maxSpans, maxEvents = 8, 4
	acc := &counting{}
	h, err := NewHandler(acc, Config{MaxBodyBytes: 1 << 20, MaxEvents: maxEvents, MaxSpans: maxSpans, MaxElements: 256})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, isJSON, compress bool) {
		acc.events = 0
		if compress {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(body)
			_ = zw.Close()
			body = buf.Bytes()
		}
		ct := ContentProtobuf
		if isJSON {
			ct = ContentJSON
		}
		req := httptest.NewRequest("POST", Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if compress {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if acc.events > maxEvents {
			t.Fatalf("%d usage spans accepted, more than %d", acc.events, maxEvents)
		}
		if rec.Code != http.StatusOK {
			return
		}
		plain := body
		if compress {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(zr)
			plain = buf.Bytes()
		}
		req2, _, err := h.decode(plain, isJSON, &reservation{m: &memory{max: 1 << 40, gauge: h.metrics.memory}})
		if err != nil {
			t.Fatalf("answered 200, but decoding again fails: %v", err)
		}
		if n := countSpans(req2); n > maxSpans {
			t.Fatalf("answered 200 for %d spans, more than %d", n, maxSpans)
		}
	})
}
