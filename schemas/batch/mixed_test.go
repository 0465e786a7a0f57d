package batch

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// mixedRows are n priced rows as a company's traffic mixes them: unique ids, response ids and
// workflows; providers, models, teams, features and the rest drawn from a few dozen values
// each, as a batch of the collector's or the enricher's holds them.
func mixedRows(n int) []Row {
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func(prefix string, k int) string { return fmt.Sprintf("%s-%d", prefix, rng.IntN(k)) }
	providers := []string{"openai", "anthropic", "google"}
	rows := make([]Row, n)
	for i := range rows {
		p := rng.IntN(len(providers))
		model := fmt.Sprintf("%s-model-%d", providers[p], rng.IntN(8))
		rows[i] = Row{
			ID: fmt.Sprintf("evt_%016x", rng.Uint64()), Time: t0.Add(time.Duration(i) * time.Millisecond),
			Received: t0.Add(time.Second), Partition: rng.IntN(4),
			Provider: providers[p], Model: model, Operation: []string{"chat", "chat", "embeddings"}[rng.IntN(3)],
			ServiceTier: []string{"", "", "default", "priority"}[rng.IntN(4)],
			ResponseID:  fmt.Sprintf("chatcmpl-%024x", rng.Uint64()), Status: "ok", LatencyMS: rng.Int64N(5000),
			Team: pick("team", 40), Feature: pick("feature", 120), Env: []string{"prod", "prod", "staging"}[rng.IntN(3)],
			CostCenter: pick("cc", 10), Traffic: "user", WorkflowID: fmt.Sprintf("wf-%x", rng.Uint64()),
			PromptVersion: pick("prompt@v", 30), Priced: true, ModelPriced: model, PriceVersion: "2026-12-01",
			CostPico: rng.Int64N(1e10), Source: pick("key:svc", 20),
		}
		rows[i].Tokens.Input, rows[i].Tokens.Output = rng.Int64N(8000), rng.Int64N(1000)
		if rng.IntN(4) == 0 {
			rows[i].ExtraTags = []Tag{{"customer", pick("cust", 200)}}
		}
	}
	return rows
}

// BenchmarkMixed encodes and compresses a batch of mixedRows, the sizes of a collector's batch
// and of an aggregator's fetch, reporting the bytes a row takes; encodes it again once
// decoded, as the enricher does; and decodes it.
func BenchmarkMixed(b *testing.B) {
	for _, n := range []int{250, 1000} {
		rows := mixedRows(n)
		plain, err := Encode(rows)
		if err != nil {
			b.Fatal(err)
		}
		data, err := AppendCompressed(nil, rows)
		if err != nil {
			b.Fatal(err)
		}
		// The enricher encodes rows it decoded: their values share their bytes.
		decoded, err := Decode(data)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct {
			name string
			rows []Row
		}{{"encode", rows}, {"reencode", decoded}} {
			b.Run(fmt.Sprintf("rows=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				var buf []byte
				for b.Loop() {
					if buf, err = AppendCompressed(buf[:0], c.rows); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(plain))/float64(n), "B/row")
				b.ReportMetric(float64(len(data))/float64(n), "compressed-B/row")
			})
		}
		b.Run(fmt.Sprintf("rows=%d/decode", n), func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]Row, 0, n)
			for b.Loop() {
				if got, err := AppendDecoded(dst[:0], data); err != nil || len(got) != n {
					b.Fatalf("AppendDecoded() = %d rows, %v", len(got), err)
				}
			}
		})
	}
}
