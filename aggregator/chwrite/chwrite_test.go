package chwrite

import (
	"fmt"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

func rows(n int, received time.Time) []batch.Row {
	rs := make([]batch.Row, n)
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	teams := []string{"search", "ads", "support", "infra"}
	for i := range rs {
		rs[i] = batch.Row{
			ID: fmt.Sprintf("evt_%010d", i), Time: start.Add(time.Duration(i) * 137 * time.Millisecond), Received: received,
			Provider: "openai", Model: "gpt-4o", Operation: "chat",
			Tokens:      event.Tokens{Input: int64(1000 + i%500), Output: int64(200 + i%100), CachedInput: int64(i % 300)},
			ServiceTier: "standard", ResponseID: fmt.Sprintf("chatcmpl-%d", i), Status: "ok", LatencyMS: 850,
			Team: teams[i%len(teams)], Feature: "summarize", Env: "prod", CostCenter: "cc-42", Traffic: "user",
			WorkflowID: "ticket-4711", PromptVersion: "summarize@v7",
			Priced: true, ModelPriced: "gpt-4o-2024-08-06", PriceVersion: "2026-11-01",
			CostPico: int64(4_250_000_000 + i), SavingsPico: 1_250_000_000,
		}
		if i%10 == 0 {
			rs[i].ExtraTags = []batch.Tag{{Key: "customer", Value: "acme"}}
		}
	}
	return rs
}
