package chwrite

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func inserter(tb testing.TB, db string) *Inserter {
	tb.Helper()
	u, err := HTTPURL(chtest.DSN())
	if err != nil {
		tb.Fatal(err)
	}
	in, err := NewInserter(u, db)
	if err != nil {
		tb.Fatal(err)
	}
	return in
}

// Every column of every row reads back from ClickHouse as the row said, edge values included.
func TestInserterStoresEveryColumn(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	rs := rows(300, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	rs[0].SavingsPico = -1_250_000_000 // a negative Decimal: two's complement in 128 bits
	rs[1].CostPico = math.MaxInt64
	rs[2].Team, rs[2].Feature = "", "zürich ✓ "+strings.Repeat("é", 200) // multi-byte, LEB128 length > 127
	rs[3].ExtraTags = []batch.Tag{{Key: "a", Value: ""}, {Key: "b", Value: "x"}, {Key: "c", Value: strings.Repeat("v", 300)}}
	rs[4].Time = time.Date(2026, 11, 1, 0, 0, 0, 999_000_000, time.UTC) // another month's edge, .999 s
	rs[5].Tokens.Input, rs[5].LatencyMS = 1<<62, 1<<40                  // latency beyond UInt32 is capped
	rs[6].CacheHit, rs[6].Priced = true, false
	rs[7].Tokens.Reasoning = -3 // validated away upstream; stored as 0 rather than wrapped
	rs[8].Source, rs[9].Source = batch.SourceProxy, batch.SourceKey+"search-prod"
	rs[10].Units = []batch.Unit{{Key: "audio_input_tokens", Count: 800, CostPico: 32_000_000_000},
		{Key: "image_outputs:1024x1024:high", Count: 2, CostPico: 334_000_000_000}, {Key: "web_search_calls", Count: 3, CostPico: -1}}
	rs[11].Estimated, rs[11].EstimateReason = true, "cut_stream"
	if err := inserter(t, db).Insert(ctx, 7, rs); err != nil {
		t.Fatal(err)
	}

	q, err := conn.Query(ctx, "SELECT event_id, toUnixTimestamp(time), time_ms, toUnixTimestamp(ingested_at), partition, "+
		"provider, model, model_priced, operation, team, feature, env, cost_center, traffic, tag_keys, tag_values, "+
		"workflow_id, prompt_version, response_id, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, "+
		"cache_write_1h_tokens, reasoning_tokens, toString(cost_usd), toString(savings_usd), priced, price_version, "+
		"service_tier, status, latency_ms, cache_hit, source, unit_keys, unit_counts, arrayMap(c -> toString(c), unit_costs_usd), estimated, estimate_reason FROM "+db+".usage_events")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	byID := map[string]*batch.Row{}
	for i := range rs {
		byID[rs[i].ID] = &rs[i]
	}
	n := 0
	for q.Next() {
		var (
			id, provider, model, priced, op, team, feature, env, cc, traffic string
			wf, pv, resp, cost, savings, version, tier, status, source       string
			reason                                                           string
			sec, ingested, latency                                           uint32
			ms, part                                                         uint16
			keys, vals                                                       []string
			tok                                                              [6]uint64
			isPriced, hit, estimated                                         uint8
			unitKeys, unitCosts                                              []string
			unitCounts                                                       []uint64
		)
		if err := q.Scan(&id, &sec, &ms, &ingested, &part, &provider, &model, &priced, &op, &team, &feature, &env, &cc, &traffic,
			&keys, &vals, &wf, &pv, &resp, &tok[0], &tok[1], &tok[2], &tok[3], &tok[4], &tok[5], &cost, &savings, &isPriced,
			&version, &tier, &status, &latency, &hit, &source, &unitKeys, &unitCounts, &unitCosts, &estimated, &reason); err != nil {
			t.Fatal(err)
		}
		n++
		r := byID[id]
		if r == nil {
			t.Fatalf("stored id %q was never inserted", id)
		}
		var wantKeys, wantVals []string
		for _, tg := range r.ExtraTags {
			wantKeys, wantVals = append(wantKeys, tg.Key), append(wantVals, tg.Value)
		}
		got := fmt.Sprint(int64(sec)*1000+int64(ms), ingested, part, provider, model, priced, op, team, feature, env, cc, traffic,
			len(keys), keys, vals, wf, pv, resp, tok, isPriced == 1, version, tier, status, latency, hit == 1, source, estimated == 1, reason)
		want := fmt.Sprint(r.Time.UnixMilli(), r.Received.Unix(), 7, r.Provider, r.Model, r.ModelPriced, r.Operation, r.Team, r.Feature, r.Env,
			r.CostCenter, r.Traffic, len(wantKeys), wantKeys, wantVals, r.WorkflowID, r.PromptVersion, r.ResponseID,
			[6]uint64{unsigned(r.Tokens.Input), unsigned(r.Tokens.Output), unsigned(r.Tokens.CachedInput), unsigned(r.Tokens.CacheWrite),
				unsigned(r.Tokens.CacheWrite1h), unsigned(r.Tokens.Reasoning)},
			r.Priced, r.PriceVersion, r.ServiceTier, r.Status, uint32(min(max(r.LatencyMS, 0), math.MaxUint32)), r.CacheHit, r.Source, r.Estimated, r.EstimateReason)
		if got != want {
			t.Errorf("row %s:\n got %s\nwant %s", id, got, want)
		}
		if len(unitKeys) != len(r.Units) || len(unitCounts) != len(r.Units) || len(unitCosts) != len(r.Units) {
			t.Fatalf("row %s: units %v %v %v, want %+v", id, unitKeys, unitCounts, unitCosts, r.Units)
		}
		money := []struct {
			name, got string
			pico      int64
		}{{"cost_usd", cost, r.CostPico}, {"savings_usd", savings, r.SavingsPico}}
		for j, u := range r.Units {
			if unitKeys[j] != u.Key || unitCounts[j] != uint64(u.Count) {
				t.Errorf("row %s: unit %d = %s × %d, want %s × %d", id, j, unitKeys[j], unitCounts[j], u.Key, u.Count)
			}
			money = append(money, struct {
				name, got string
				pico      int64
			}{"unit_costs_usd[" + u.Key + "]", unitCosts[j], u.CostPico})
		}
		for _, m := range money {
			if d, err := decimal.NewFromString(m.got); err != nil || !d.Equal(decimal.New(m.pico, -12)) {
				t.Errorf("row %s: %s = %s, want %s", id, m.name, m.got, decimal.New(m.pico, -12))
			}
		}
	}
	if err := q.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(rs) {
		t.Fatalf("read back %d rows, want %d", n, len(rs))
	}
}

func TestHTTPURL(t *testing.T) {
	for _, c := range []struct{ dsn, want, err string }{
		{"clickhouse://127.0.0.1:9000", "http://127.0.0.1:8123", ""},
		{"clickhouse://bob:s3cret@ch.internal:9000/tokenmeter", "http://bob:s3cret@ch.internal:8123", ""},
		{"clickhouse://ch.example.com:9440?secure=true", "https://ch.example.com:8443", ""},
		{"http://ch.internal:18123/db", "http://ch.internal:18123", ""},
		{"clickhouse://127.0.0.1:19000", "", "cannot tell ClickHouse's HTTP port from native port 19000; set the HTTP URL"},
	} {
		got, err := HTTPURL(c.dsn)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("HTTPURL(%q) error = %v, want %q", c.dsn, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("HTTPURL(%q) = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "ftp://x:1", "http://", "127.0.0.1:8123"} {
		if _, err := NewInserter(bad, "db"); err == nil {
			t.Errorf("NewInserter(%q) succeeded", bad)
		}
	}
}

func BenchmarkInserter(b *testing.B) {
	conn := chtest.Conn(b)
	db := chtest.Database(b, conn)
	ctx := context.Background()
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		b.Fatal(err)
	}
	rs := rows(50_000, time.Now().UTC())
	in := inserter(b, db)
	b.ReportAllocs()
	for b.Loop() {
		if err := in.Insert(ctx, 0, rs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rs)*b.N)/b.Elapsed().Seconds(), "rows/s")
}
