package enrich

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// TestEnrichPricesEstimatedRows: a call the proxy estimated (issue 18) is priced like any
// other — its cost is the estimate of what the provider billed — and keeps its flag and reason.
func TestEnrichPricesEstimatedRows(t *testing.T) {
	nc, js := startJetStream(t)
	runEnricher(t, nc, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	at := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	row := batch.Row{ID: "proxy-openai-chatcmpl-esc1", Time: at, Received: at, Partition: 1, Provider: "openai", Model: "gpt-4o",
		ServiceTier: event.TierStandard, Status: "incomplete", Source: batch.SourceProxy,
		Tokens: event.Tokens{Input: 8, Output: 3}, Estimated: true, EstimateReason: event.EstimateCutStream}
	data, err := batch.Encode([]batch.Row{row})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, 1, data, batch.SchemaName)
	got, err := batch.Decode(next(t, js, stream.Enriched, stream.EnrichedSubject(1)).Data())
	if err != nil {
		t.Fatal(err)
	}
	// gpt-4o: 8 input × $2.50/M + 3 output × $10.00/M.
	if len(got) != 1 || !got[0].Priced || got[0].CostPico != 8*2_500_000+3*10_000_000 || !got[0].Estimated || got[0].EstimateReason != event.EstimateCutStream {
		t.Fatalf("enriched %+v, want priced at %d pico, estimated, cut_stream", got, 8*2_500_000+3*10_000_000)
	}
}
