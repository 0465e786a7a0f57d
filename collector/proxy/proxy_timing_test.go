package proxy

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkProxy measures the latency the proxy adds to a call: the same request straight to
// a loopback upstream and through the proxy (reading the usage and emitting the event into
// embedded JetStream with the real emitter). The difference between the direct and proxied
// p50 and p99 is the proxy's own cost.
//
//	go test -run '^$' -bench BenchmarkProxy -benchtime 3000x ./collector/proxy/
func BenchmarkProxy(b *testing.B) {
	for _, mode := range []string{"json", "sse"} {
		file, contentType := "openai_chat.json", "application/json"
		if mode == "sse" {
			file, contentType = "openai_chat_stream.sse", "text/event-stream"
		}
		body := fixture(b, file)
		h := newHarness(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", contentType)
			if mode == "json" {
				w.Write(body)
				return
			}
			for _, ev := range strings.SplitAfter(string(body), "\n\n") {
				io.WriteString(w, ev)
				w.(http.Flusher).Flush()
			}
		}))
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		for _, target := range []string{"direct", "proxied"} {
			url := h.upstream.URL + "/v1/chat/completions"
			if target == "proxied" {
				url = h.srv.URL + "/openai/v1/chat/completions"
			}
			b.Run("mode="+mode+"/"+target, func(b *testing.B) {
				b.ReportAllocs()
				var lat []time.Duration
				for b.Loop() {
					start := time.Now()
					resp, err := client.Post(url, "application/json", strings.NewReader(`{"model":"gpt-4o","messages":[]}`))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					lat = append(lat, time.Since(start))
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
			})
		}
	}
}
