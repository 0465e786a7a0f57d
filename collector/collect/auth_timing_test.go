package collect

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// BenchmarkAttribute measures what the API key and the tag policy add to a 1,000-event body
// (ndjsonBody: every event tagged team search, env prod): nothing when neither is configured.
func BenchmarkAttribute(b *testing.B) {
	dir := b.TempDir()
	keysFile := writeFile(b, dir, "keys.json", testKeys)
	policyFile := writeFile(b, dir, "policy.yaml", testPolicy)
	body := ndjsonBody(1000)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"none", Config{}},
		{"keys", Config{KeysFile: keysFile}},
		{"policy", Config{TagPolicyFile: policyFile}},
		{"keys+policy", Config{KeysFile: keysFile, TagPolicyFile: policyFile}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := tc.cfg
			cfg.Registerer = prometheus.NewRegistry()
			cfg = cfg.withDefaults()
			a, err := newAttributor(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if a.keys != nil {
				k, _ := a.keys.get().Lookup(keySearch)
				ctx = context.WithValue(ctx, keyContext{}, &k)
			}
			now := time.Now()
			decoded, err := event.Decode(body, event.ContentNDJSON, now, cfg.Limits, cfg.MaxEvents)
			if err != nil {
				b.Fatal(err)
			}
			events := make([]event.Usage, len(decoded.Events))
			b.ReportAllocs()
			for b.Loop() {
				copy(events, decoded.Events)
				batch := event.Batch{Events: events}
				a.applyBatch(a.request(ctx), &batch)
				if len(batch.Events) != 1000 {
					b.Fatalf("%d events kept: %v", len(batch.Events), batch.Rejected)
				}
			}
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkIngestAttributed is BenchmarkIngest with a keys file and a tag policy.
func BenchmarkIngestAttributed(b *testing.B) {
	dir := b.TempDir()
	s := natstest.Start(b, b.TempDir(), -1)
	nc := natstest.Connect(b, s)
	streamtest.Streams(b, nc, nil)
	c, err := New(Config{KeysFile: writeFile(b, dir, "keys.json", testKeys), TagPolicyFile: writeFile(b, dir, "policy.yaml", testPolicy)}, nc)
	if err != nil {
		b.Fatal(err)
	}
	h := c.Handler()
	body := ndjsonBody(1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", event.ContentNDJSON)
		req.Header.Set(HeaderKey, keySearch)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}
