package otlp

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// bomb is a gzip body that decompresses to an ExportTraceServiceRequest of n bytes: one
// unknown field of zeros, which decodes (protobuf keeps unknown fields) to n bytes as well.
func bomb(tb testing.TB, n int) []byte {
	tb.Helper()
	plain := protowire.AppendBytes(protowire.AppendTag(nil, 15, protowire.BytesType), make([]byte, n))
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(plain); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func export(h http.Handler, body []byte) (int, string, string) {
	req := httptest.NewRequest("POST", Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ContentProtobuf)
	req.Header.Set("Content-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var st status.Status
	_ = proto.Unmarshal(rec.Body.Bytes(), &st)
	return rec.Code, rec.Header().Get("Retry-After"), st.GetMessage()
}

// Small bodies that each decompress to nearly the per-request limit add up: what all the
// requests being answered hold is bounded by MaxMemoryBytes, and a request that would pass
// it is answered 503 with Retry-After, which OTLP exporters retry.
func TestMemoryBoundAcrossRequests(t *testing.T) {
	h, err := NewHandler(&counting{}, Config{MaxMemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	body := bomb(t, 15<<20) // 15 MiB once decompressed, 15 KiB sent
	t.Logf("body: %d bytes", len(body))

	// With the memory held by others, the request is refused, not read whole.
	others := &reservation{m: h.mem}
	if !others.take(40 << 20) {
		t.Fatal("cannot reserve 40 MiB of 64")
	}
	code, retry, msg := export(h, body)
	const want = "the collector holds 64 MiB for other OTLP requests, its limit: send this one again later"
	if code != http.StatusServiceUnavailable || retry != "1" || msg != want {
		t.Errorf("memory held: %d (Retry-After %q) %q, want 503 (1) %q", code, retry, msg, want)
	}
	others.release()
	if code, _, msg := export(h, body); code != http.StatusOK {
		t.Errorf("memory free: %d %q, want 200", code, msg)
	}

	// Sixteen at once: each is answered 200 or 503, and never more than the bound is held.
	var wg sync.WaitGroup
	codes := make([]int, 16)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = export(h, body)
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK && c != http.StatusServiceUnavailable {
			t.Errorf("request %d: %d, want 200 or 503", i, c)
		}
	}
	if h.mem.peak > 64<<20 || h.mem.used != 0 {
		t.Errorf("peak %d bytes held, %d still held; want at most %d, and 0", h.mem.peak, h.mem.used, 64<<20)
	}
	t.Logf("answers %v, peak %d MiB held", codes, h.mem.peak>>20)
}
