package standalone

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/testkit"
)

// TestUnitsEndToEnd posts events with units (docs/units.md) through the collector's HTTP
// intake and reads their exact costs back from usage_events, spend_1m and unit_spend_1m, the
// prices being the shipped catalogue's: a web search of Claude Sonnet 4.5 costs 0.01 USD, an
// audio token of gpt-4o-audio-preview 40 (input) and 80 (output) USD per 1M.
func TestUnitsEndToEnd(t *testing.T) {
	conn := openClickHouse(t)
	db := freshDatabase(t, conn)
	p := startPipeline(t, db, 2)
	at := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)
	body := strings.Join([]string{
		// 1000·3e6 + 500·15e6 + 3 searches·1e10 = 40.5e9 pico.
		fmt.Sprintf(`{"id":"un-1","time":%q,"provider":"anthropic","model":"claude-sonnet-4-5","usage":{"input_tokens":1000,"output_tokens":500},"units":{"web_search_calls":3},"tags":{"team":"research"}}`, at),
		// (1000−800)·2.5e6 + 800·40e6 + (500−400)·10e6 + 400·80e6 = 65.5e9 pico.
		fmt.Sprintf(`{"id":"un-2","time":%q,"provider":"openai","model":"gpt-4o-audio-preview","usage":{"input_tokens":1000,"output_tokens":500},"units":{"audio_input_tokens":800,"audio_output_tokens":400},"tags":{"team":"voice"}}`, at),
		// An image size DALL-E 3 does not sell: stored unpriced, never free.
		fmt.Sprintf(`{"id":"un-3","time":%q,"provider":"openai","model":"dall-e-3","usage":{"input_tokens":0,"output_tokens":0},"units":{"image_outputs:4096x4096:hd":1},"tags":{"team":"design"}}`, at),
		// A typo is refused, not stored as a charge nobody prices.
		fmt.Sprintf(`{"id":"un-4","time":%q,"provider":"openai","model":"gpt-5","usage":{"input_tokens":1,"output_tokens":1},"units":{"web_searches":1}}`, at),
	}, "\n")
	send(t, "http://"+p.CollectorAddr()+"/v1/events", body,
		`{"accepted":3,"rejected":[{"index":3,"id":"un-4","error":"units: key \"web_searches\" is not a unit (want web_search_calls, image_outputs, requests, audio_input_tokens, audio_output_tokens, the first three optionally with \":<variant>\" of [a-z0-9._-])"}]}`)

	query := queryString(t, conn)
	// The roll-ups are written in the same INSERT as usage_events, but after it: wait for all.
	count := func() string {
		var s string
		_ = conn.QueryRow(context.Background(), "SELECT concat(toString((SELECT count() FROM "+db+".usage_events)), ' ', "+
			"toString((SELECT sum(events) FROM "+db+".spend_1m)), ' ', toString((SELECT sum(events) FROM "+db+".unit_spend_1m)))").Scan(&s)
		return s
	}
	testkit.EventuallyEquals(t, 60*time.Second, "events in usage_events, spend_1m and unit_spend_1m", "3 3 4", count)
	for q, want := range map[string]string{
		// Every unit of every event, with its count and cost, from usage_events.
		"SELECT arrayStringConcat(groupArray(line), ';') FROM (SELECT concat(event_id, ' ', unit, ' ', toString(n), ' ', toString(c), ' ', toString(cost_usd), ' ', toString(priced)) AS line FROM " +
			db + ".usage_events ARRAY JOIN unit_keys AS unit, unit_counts AS n, unit_costs_usd AS c ORDER BY event_id, unit)": "" +
			"un-1 web_search_calls 3 0.030000000000 0.040500000000 1;" +
			"un-2 audio_input_tokens 800 0.032000000000 0.065500000000 1;" +
			"un-2 audio_output_tokens 400 0.032000000000 0.065500000000 1;" +
			"un-3 image_outputs:4096x4096:hd 1 0.000000000000 0.000000000000 0",
		"SELECT toString(sum(cost_usd)) FROM " + db + ".spend_1m":                         "0.106000000000",
		"SELECT toString(sum(unpriced_events)) FROM " + db + ".spend_1m":                  "1",
		"SELECT toString(sum(cost_usd)) FROM " + db + ".spend_1m WHERE team = 'research'": "0.040500000000",
		// Which unit left an event unpriced.
		"SELECT concat(provider, ' ', model, ' ', unit, ' ', toString(events), ' ', toString(units)) FROM " + db + ".unpriced_units": "openai dall-e-3 image_outputs:4096x4096:hd 1 1",
		// The units' part of it, per key, from unit_spend_1m.
		"SELECT arrayStringConcat(groupArray(line), ';') FROM (SELECT concat(team, ' ', unit, ' ', toString(sum(events)), ' ', toString(sum(units)), ' ', toString(sum(cost_usd))) AS line FROM " +
			db + ".unit_spend_1m GROUP BY team, unit ORDER BY team, unit)": "" +
			"design image_outputs:4096x4096:hd 1 1 0.000000000000;" +
			"research web_search_calls 1 3 0.030000000000;" +
			"voice audio_input_tokens 1 800 0.032000000000;" +
			"voice audio_output_tokens 1 400 0.032000000000",
	} {
		if got := query(q); got != want {
			t.Errorf("%s\n got %s\nwant %s", q, got, want)
		}
	}
}

// startPipeline starts every stage in one process with a collector on a free port, writing to
// database db, and stops it when the test ends.
func startPipeline(t *testing.T, db string, partitions int) *Pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", ClickHouseDSN: clickhouseDSN(), Database: db,
		Partitions: partitions, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := p.Wait(); err != nil {
			t.Errorf("pipeline stopped with: %v", err)
		}
	})
	return p
}

// queryString returns a function that reads the one String a query answers.
func queryString(t *testing.T, conn driver.Conn) func(q string) string {
	return func(q string) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(context.Background(), q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}
}
