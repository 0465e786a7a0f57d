package chwrite

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// rowBinaryTypes is the RowBinary type of each column of usage_events that appendRows
// writes. A column added to columns must be added here for FuzzAppendRows to decode it.
var rowBinaryTypes = map[string]string{
	"event_id": "String", "time": "UInt32", "time_ms": "UInt16", "ingested_at": "UInt32", "partition": "UInt16",
	"provider": "String", "model": "String", "model_priced": "String", "operation": "String", "team": "String",
	"feature": "String", "env": "String", "cost_center": "String", "traffic": "String",
	"tag_keys": "Array(String)", "tag_values": "Array(String)",
	"workflow_id": "String", "prompt_version": "String", "response_id": "String",
	"input_tokens": "UInt64", "output_tokens": "UInt64", "cached_input_tokens": "UInt64", "cache_write_tokens": "UInt64",
	"cache_write_1h_tokens": "UInt64", "reasoning_tokens": "UInt64",
	"cost_usd": "Decimal128", "savings_usd": "Decimal128", "priced": "UInt8", "price_version": "String",
	"service_tier": "String", "status": "String", "latency_ms": "UInt32", "cache_hit": "UInt8", "tier_fallback": "UInt8",
	"source":    "String",
	"unit_keys": "Array(String)", "unit_counts": "Array(UInt64)", "unit_costs_usd": "Array(Decimal128)",
	"estimated": "UInt8", "estimate_reason": "String",
}

// decodeRowBinary reads n rows of the columns as ClickHouse does, into one map per row
// (strings as string, arrays as []string, integers as uint64, decimals as their low and high
// words in a [2]uint64). It fails on a short buffer, and on bytes left over.
func decodeRowBinary(b []byte, n int) ([]map[string]any, error) {
	var out []map[string]any
	str := func() (string, error) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return "", fmt.Errorf("bad string length at %d bytes left", len(b))
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, nil
	}
	fixed := func(size int) (uint64, error) {
		if len(b) < size {
			return 0, fmt.Errorf("short buffer: %d bytes left, want %d", len(b), size)
		}
		var v uint64
		for i := size - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		b = b[size:]
		return v, nil
	}
	arrayLen := func(c string) (uint64, error) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)) {
			return 0, fmt.Errorf("column %s: bad array length", c)
		}
		b = b[k:]
		return l, nil
	}
	for range n {
		row := map[string]any{}
		for _, c := range strings.Split(columns, ", ") {
			var v any
			var err error
			switch t := rowBinaryTypes[c]; t {
			case "String":
				v, err = str()
			case "Array(String)":
				l, err := arrayLen(c)
				if err != nil {
					return nil, err
				}
				a := make([]string, 0, l)
				for range l {
					s, err := str()
					if err != nil {
						return nil, fmt.Errorf("column %s: %w", c, err)
					}
					a = append(a, s)
				}
				v = a
			case "Array(UInt64)", "Array(Decimal128)":
				l, err := arrayLen(c)
				if err != nil {
					return nil, err
				}
				a := make([]string, 0, l)
				for range l {
					lo, err := fixed(8)
					if err == nil && t == "Array(Decimal128)" {
						var hi uint64
						hi, err = fixed(8)
						a = append(a, fmt.Sprint([2]uint64{lo, hi}))
					} else {
						a = append(a, fmt.Sprint(lo))
					}
					if err != nil {
						return nil, fmt.Errorf("column %s: %w", c, err)
					}
				}
				v = a
			case "UInt8":
				v, err = fixed(1)
			case "UInt16":
				v, err = fixed(2)
			case "UInt32":
				v, err = fixed(4)
			case "UInt64":
				v, err = fixed(8)
			case "Decimal128":
				var lo, hi uint64
				if lo, err = fixed(8); err == nil {
					hi, err = fixed(8)
				}
				v = [2]uint64{lo, hi}
			default:
				return nil, fmt.Errorf("column %s: no RowBinary type known to the fuzz decoder", c)
			}
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", c, err)
			}
			row[c] = v
		}
		out = append(out, row)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d bytes left over after %d rows", len(b), n)
	}
	return out, nil
}

// expectRow is what decodeRowBinary must read back for r.
func expectRow(r *batch.Row, partition int) map[string]any {
	ms := r.Time.UnixMilli()
	sec := floorDiv(ms, 1000)
	dec := func(v int64) [2]uint64 { return [2]uint64{uint64(v), uint64(v >> 63)} }
	keys, values := []string{}, []string{}
	for _, t := range r.ExtraTags {
		keys, values = append(keys, t.Key), append(values, t.Value)
	}
	unitKeys, unitCounts, unitCosts := []string{}, []string{}, []string{}
	for _, u := range r.Units {
		unitKeys, unitCounts = append(unitKeys, u.Key), append(unitCounts, fmt.Sprint(unsigned(u.Count)))
		unitCosts = append(unitCosts, fmt.Sprint(dec(u.CostPico)))
	}
	return map[string]any{
		"event_id": r.ID, "time": uint64(uint32(sec)), "time_ms": uint64(uint16(ms - sec*1000)),
		"ingested_at": uint64(uint32(r.Received.Unix())), "partition": uint64(uint16(partition)),
		"provider": r.Provider, "model": r.Model, "model_priced": r.ModelPriced, "operation": r.Operation,
		"team": r.Team, "feature": r.Feature, "env": r.Env, "cost_center": r.CostCenter, "traffic": r.Traffic,
		"tag_keys": keys, "tag_values": values,
		"workflow_id": r.WorkflowID, "prompt_version": r.PromptVersion, "response_id": r.ResponseID,
		"input_tokens": unsigned(r.Tokens.Input), "output_tokens": unsigned(r.Tokens.Output),
		"cached_input_tokens": unsigned(r.Tokens.CachedInput), "cache_write_tokens": unsigned(r.Tokens.CacheWrite),
		"cache_write_1h_tokens": unsigned(r.Tokens.CacheWrite1h), "reasoning_tokens": unsigned(r.Tokens.Reasoning),
		"cost_usd": dec(r.CostPico), "savings_usd": dec(r.SavingsPico), "priced": uint64(flag(r.Priced)),
		"price_version": r.PriceVersion, "service_tier": r.ServiceTier, "status": r.Status,
		"latency_ms": uint64(min(max(r.LatencyMS, 0), math.MaxUint32)), "cache_hit": uint64(flag(r.CacheHit)),
		"source": r.Source, "unit_keys": unitKeys, "unit_counts": unitCounts, "unit_costs_usd": unitCosts,
		"estimated": uint64(flag(r.Estimated)), "estimate_reason": r.EstimateReason,
	}
}

// FuzzAppendRows: whatever the client-chosen strings and numbers of a row, its RowBinary
// decodes, column by column as ClickHouse reads it, to exactly the row — and so does the row
// after it: no string can spill into the next column (a crafted team name cannot become a
// cost), and no number can change another.
func FuzzAppendRows(f *testing.F) {
	f.Add("e1", "search", "chat", "gpt-4o", "region", "eu", int64(1_500_000_000_000), int64(-7), int64(1000), int64(250), int64(1_764_000_000_123))
	f.Add("", "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", strings.Repeat("é", 200), "\x00", "", "\xff", int64(math.MinInt64), int64(math.MaxInt64), int64(-1), int64(1<<40), int64(-1))
	f.Fuzz(func(t *testing.T, id, team, feature, model, tagKey, tagValue string, cost, savings, input, latency, ms int64) {
		at := time.UnixMilli(ms).UTC()
		hostile := batch.Row{ID: id, Time: at, Received: at, Provider: model, Model: model, Team: team, Feature: feature,
			ExtraTags: []batch.Tag{{Key: tagKey, Value: tagValue}}, ResponseID: feature, Status: team,
			Tokens: batchTokens(input), CostPico: cost, SavingsPico: savings, Priced: cost%2 == 0, LatencyMS: latency, CacheHit: savings%2 == 0, Source: tagKey,
			Units: []batch.Unit{{Key: tagValue, Count: input, CostPico: savings}, {Key: team, Count: latency, CostPico: cost}}}
		next := batch.Row{ID: "sentinel", Time: time.Unix(1_764_000_000, 0).UTC(), Received: time.Unix(1_764_000_001, 0).UTC(),
			Provider: "openai", Model: "gpt-4o", Team: "audit", CostPico: 42, Priced: true, LatencyMS: 5}
		rows := []batch.Row{hostile, next}
		data := appendRows(nil, 3, rows)
		if size := rowsSize(rows); size != len(data) {
			t.Fatalf("rowsSize = %d, appendRows wrote %d bytes", size, len(data))
		}
		got, err := decodeRowBinary(data, len(rows))
		if err != nil {
			t.Fatal(err)
		}
		for i := range rows {
			want := expectRow(&rows[i], 3)
			for c, v := range got[i] {
				w, ok := want[c]
				if !ok {
					continue // a column this test does not know the value of yet
				}
				if fmt.Sprint(v) != fmt.Sprint(w) {
					t.Fatalf("row %d column %s = %v, want %v", i, c, v, w)
				}
			}
		}
	})
}

// TestRowsSize checks that rowsSize is exactly what appendRows writes, so that an INSERT's
// buffer is grown once: for rows without tags or units, with both, and with strings whose
// lengths take one, two and three bytes.
func TestRowsSize(t *testing.T) {
	full := batch.Row{ID: "evt_1", Time: time.Unix(1_764_000_000, 0).UTC(), Provider: "openai", Model: "gpt-4o",
		ExtraTags: []batch.Tag{{Key: "customer", Value: "acme"}, {Key: "region", Value: strings.Repeat("r", 127)}},
		Units:     []batch.Unit{{Key: "web_search_calls", Count: 3, CostPico: 30}}, PriceVersion: strings.Repeat("v", 128),
		EstimateReason: strings.Repeat("e", 16384), Source: strings.Repeat("s", 16383)}
	for i, rows := range [][]batch.Row{nil, {{}}, {full}, {{}, full, {ID: "x"}}} {
		if got, want := rowsSize(rows), len(appendRows(nil, 1, rows)); got != want {
			t.Errorf("rows %d: rowsSize = %d, appendRows wrote %d bytes", i, got, want)
		}
	}
}

// batchTokens spreads one fuzzed count over every token field, negative values included
// (validated away upstream; the encoder stores them as 0).
func batchTokens(n int64) (t event.Tokens) {
	t.Input, t.Output, t.CachedInput, t.CacheWrite, t.CacheWrite1h, t.Reasoning = n, n/2, -n, n/3, n/5, n/7
	return t
}
