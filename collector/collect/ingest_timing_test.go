package collect

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// ndjsonBody is a body of n realistic events, all valid at the real clock's now.
func ndjsonBody(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"id":"evt_%08d","provider":"openai","model":"gpt-4o-2024-08-06","operation":"chat",`+
			`"usage":{"input_tokens":%d,"output_tokens":300,"cached_input_tokens":1000},"service_tier":"standard",`+
			`"response_id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5q%04d","status":"ok","latency_ms":850,`+
			`"tags":{"team":"search","feature":"summarize","env":"prod","cost_center":"cc-42","traffic":"user"},`+
			`"workflow_id":"ticket-4711","prompt_version":"summarize@v7"}`+"\n", i, 1200+i%100, i%10000)
	}
	return b.Bytes()
}

// mixedBody is a body of n events as a company's services send them: a few providers and
// a dozen models, 40 teams, 120 features, three environments and the rest in random order,
// so that neighbouring events mostly differ.
func mixedBody(n int) []byte {
	rng := rand.New(rand.NewPCG(7, 8))
	providers := []string{"openai", "anthropic", "google"}
	var b bytes.Buffer
	for i := range n {
		p := rng.IntN(len(providers))
		fmt.Fprintf(&b, `{"id":"evt_%08d","provider":%q,"model":"%s-model-%d","operation":"chat",`+
			`"usage":{"input_tokens":%d,"output_tokens":%d},"service_tier":"standard",`+
			`"response_id":"resp_%016x","status":"ok","latency_ms":%d,`+
			`"tags":{"team":"team-%d","feature":"feature-%d","env":%q,"cost_center":"cc-%d","traffic":"user"},`+
			`"workflow_id":"wf-%x","prompt_version":"prompt@v%d"}`+"\n",
			i, providers[p], providers[p], rng.IntN(4), rng.IntN(8000), rng.IntN(1000), rng.Uint64(), rng.IntN(5000),
			rng.IntN(40), rng.IntN(120), []string{"prod", "prod", "staging"}[rng.IntN(3)], rng.IntN(10), rng.Uint64(), rng.IntN(30))
	}
	return b.Bytes()
}

// BenchmarkIngest measures POST /v1/events end to end: decoding, validation, Arrow encoding
// and waiting for JetStream (file storage) to acknowledge every partition's message.
func BenchmarkIngest(b *testing.B) {
	const events = 1000
	s := natstest.Start(b, b.TempDir(), -1)
	nc := natstest.Connect(b, s)
	streamtest.Streams(b, nc, nil)
	c, err := New(Config{}, nc)
	if err != nil {
		b.Fatal(err)
	}
	h := c.Handler()
	body := ndjsonBody(events)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", event.ContentNDJSON)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecode measures what the handler does before publishing, without NATS: decoding
// and validating a 1,000-event NDJSON body, then grouping and Arrow-encoding its rows, with
// the decoder (its events' array and maps) and the payloads' buffer used again from body to
// body, as the handler does.
func BenchmarkDecode(b *testing.B) {
	const events = 1000
	c := &Collector{cfg: Config{}.withDefaults()}
	for _, body := range []struct {
		name string
		data []byte
	}{{"uniform", ndjsonBody(events)}, {"mixed", mixedBody(events)}} {
		for _, encode := range []bool{false, true} {
			b.Run(fmt.Sprintf("body=%s/encode=%t", body.name, encode), func(b *testing.B) {
				body := body.data
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				var dec event.Decoder
				var payloads []byte
				for b.Loop() {
					now := time.Now()
					batch, err := dec.Decode(body, event.ContentNDJSON, now, c.cfg.Limits, c.cfg.MaxEvents)
					if err != nil || len(batch.Events) != events {
						b.Fatalf("decode: %d events, %v", len(batch.Events), err)
					}
					if encode {
						if _, payloads, err = c.messages(batch.Events, "", now, 1<<20, payloads[:0]); err != nil {
							b.Fatal(err)
						}
					}
					dec.Recycle()
				}
				b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
