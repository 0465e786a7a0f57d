package alerting

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// BenchmarkAdd measures what the alerter does with one USAGE_ENRICHED message of rows=N
// events, decoding included, against the built-in rules. The batch is the same every time,
// so after the first message every group exists: this is the steady state.
func BenchmarkAdd(b *testing.B) {
	for _, n := range []int{1_000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			ns := natstest.Start(b, b.TempDir(), -1)
			a, err := New(Config{}, natstest.Connect(b, ns))
			if err != nil {
				b.Fatal(err)
			}
			data, err := batch.Encode(enrichedRows(n, time.Now().UTC().Add(-time.Minute)))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := a.add(data, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// enrichedRows is a batch as the enricher publishes it: every column filled, about 50 teams,
// a dozen models and features, one event in twenty unpriced and one in ten untagged.
func enrichedRows(n int, at time.Time) []batch.Row {
	models := []string{"gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-5", "gpt-5-mini",
		"o4-mini", "o3", "claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-3-5-haiku"}
	features := []string{"chat", "summarize", "search", "classify", "extract", "translate", "agent", "embed-rerank"}
	envs := []string{"prod", "staging", "dev"}
	rows := make([]batch.Row, n)
	for i := range rows {
		model := models[i%len(models)]
		provider := "openai"
		if i%len(models) >= 8 {
			provider = "anthropic"
		}
		r := batch.Row{
			ID:   fmt.Sprintf("01JDXYZ%019d", i),
			Time: at.Add(time.Duration(i) * time.Millisecond).Truncate(time.Millisecond), Received: at.Add(time.Second).Truncate(time.Millisecond),
			Partition: i % 16, Provider: provider, Model: model + "-2025-04-14", Operation: "chat",
			Tokens:      event.Tokens{Input: int64(1000 + i), Output: int64(200 + i%300), CachedInput: int64(i % 500), Reasoning: int64(i % 64)},
			ServiceTier: "default", ResponseID: "chatcmpl-" + strconv.FormatInt(int64(i)*7919, 36) + "B9MBs8xQz", Status: "ok", LatencyMS: int64(300 + i%2000),
			Team: "team-" + strconv.Itoa(i%50), Feature: features[i%len(features)], Env: envs[i%len(envs)],
			CostCenter: "cc-" + strconv.Itoa(i%7), Traffic: "user",
			ExtraTags:  []batch.Tag{{Key: "customer", Value: "cust-" + strconv.Itoa(i%200)}, {Key: "region", Value: "eu-west-1"}},
			WorkflowID: "wf-" + strconv.Itoa(i), PromptVersion: "v7", CacheHit: i%5 == 0,
			Priced: i%20 != 0, ModelPriced: model, PriceVersion: "2026-11-01",
		}
		if r.Priced {
			r.CostPico = int64(1_000_000 + i*997)
		}
		if i%10 == 0 {
			r.Team = ""
		}
		rows[i] = r
	}
	return rows
}
