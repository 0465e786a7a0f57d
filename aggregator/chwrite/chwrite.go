// Package chwrite writes usage rows to ClickHouse's usage_events table: an Inserter sends one
// INSERT in RowBinary over ClickHouse's HTTP interface, and a Group lets the partition workers
// of a process share their INSERTs.
package chwrite

import "github.com/tokenmeter/tokenmeter/schemas/batch"

// columns is the explicit column list of the INSERT; ClickHouse 18.x needs it, and it keeps
// the writer working when later migrations add columns.
const columns = "event_id, time, time_ms, ingested_at, partition, provider, model, model_priced, operation, " +
	"team, feature, env, cost_center, traffic, tag_keys, tag_values, workflow_id, prompt_version, response_id, " +
	"input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, " +
	"cost_usd, savings_usd, priced, price_version, service_tier, status, latency_ms, cache_hit, source, " +
	"unit_keys, unit_counts, unit_costs_usd, estimated, estimate_reason"

// part is rows of one stream partition.
type part struct {
	partition int
	rows      []batch.Row
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// unsigned maps a token count to UInt64. Counts are validated non-negative upstream; a
// negative one here would wrap to an absurd number, so it is stored as 0 instead.
func unsigned(n int64) uint64 { return uint64(max(n, 0)) }

func flag(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
