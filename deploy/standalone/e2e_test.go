package standalone

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/collector/emit"
	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
)

func clickhouseDSN() string {
	if v := os.Getenv("TOKENMETER_CLICKHOUSE_DSN"); v != "" {
		return v
	}
	return "clickhouse://127.0.0.1:9000"
}

func openClickHouse(t testing.TB) driver.Conn {
	t.Helper()
	opts, err := clickhouse.ParseDSN(clickhouseDSN())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(context.Background()); err != nil {
		t.Fatalf("ClickHouse at %s is required (make test starts one): %v", clickhouseDSN(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func freshDatabase(t testing.TB, conn driver.Conn) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	db := "tm_e2e_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	return db
}

// totals are the measures the test checks, in every table.
type totals struct {
	Events, Unpriced                                                uint64
	Input, Output, CachedInput, CacheWrite, CacheWrite1h, Reasoning uint64
	Cost, Savings                                                   decimal.Decimal
}

func (a totals) String() string {
	return fmt.Sprintf("events=%d unpriced=%d in=%d out=%d cached=%d cw=%d cw1h=%d reasoning=%d cost=%s savings=%s",
		a.Events, a.Unpriced, a.Input, a.Output, a.CachedInput, a.CacheWrite, a.CacheWrite1h, a.Reasoning,
		a.Cost.String(), a.Savings.String())
}

func (a totals) equal(b totals) bool {
	return a.Events == b.Events && a.Unpriced == b.Unpriced && a.Input == b.Input && a.Output == b.Output &&
		a.CachedInput == b.CachedInput && a.CacheWrite == b.CacheWrite && a.CacheWrite1h == b.CacheWrite1h &&
		a.Reasoning == b.Reasoning && a.Cost.Equal(b.Cost) && a.Savings.Equal(b.Savings)
}

// priceTable is the test's own reading of the shipped price files: it looks models up and
// computes costs itself, in integers, so a mistake in the enricher's lookup or arithmetic
// shows up as a difference.
type priceTable map[string][]pricefile.Price // "provider/model" → rows by effective date

var snapshotSuffix = regexp.MustCompile(`-\d{4}-?\d{2}-?\d{2}$`)

func loadPriceTable(t testing.TB) priceTable {
	t.Helper()
	paths, err := filepath.Glob("../../enricher/pricing/catalog/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("price files: %v (found %d)", err, len(paths))
	}
	pt := priceTable{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := pricefile.Parse(filepath.Base(p), data)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range f.Models {
			pt[f.Provider+"/"+m.Name] = m.Prices
		}
	}
	return pt
}

// cost returns the picodollar cost and savings of an event, and whether it is priced.
func (pt priceTable) cost(u *event.Usage) (cost, savings int64, priced bool) {
	rows, ok := pt[u.Provider+"/"+u.Model]
	if !ok {
		rows, ok = pt[u.Provider+"/"+snapshotSuffix.ReplaceAllString(u.Model, "")]
	}
	if !ok {
		return 0, 0, false
	}
	var row *pricefile.Price
	for i := range rows {
		if !rows[i].Effective.After(u.Time) && (row == nil || rows[i].Effective.After(row.Effective)) {
			row = &rows[i]
		}
	}
	if row == nil {
		return 0, 0, false
	}
	r := row.RatesFor(u.ServiceTier, u.Usage.Input)
	tk := u.Usage
	full := (tk.Input-tk.CachedInput-tk.CacheWrite)*int64(r.Input) + tk.CachedInput*int64(r.CachedInput) +
		(tk.CacheWrite-tk.CacheWrite1h)*int64(r.CacheWrite) + tk.CacheWrite1h*int64(r.CacheWrite1h) +
		(tk.Output-tk.Reasoning)*int64(r.Output) + tk.Reasoning*int64(r.Reasoning)
	if u.CacheHit {
		return 0, full, true
	}
	return full, tk.CachedInput * int64(r.Input-r.CachedInput), true
}

func expectedTotals(pt priceTable, events []event.Usage) (all totals, byTeam map[string]decimal.Decimal) {
	var cost, savings int64
	teamCost := map[string]int64{}
	for i := range events {
		u := &events[i]
		c, s, priced := pt.cost(u)
		all.Events++
		if !priced {
			all.Unpriced++
		}
		cost += c
		savings += s
		teamCost[u.Tags[event.TagTeam]] += c
		all.Input += uint64(u.Usage.Input)
		all.Output += uint64(u.Usage.Output)
		all.CachedInput += uint64(u.Usage.CachedInput)
		all.CacheWrite += uint64(u.Usage.CacheWrite)
		all.CacheWrite1h += uint64(u.Usage.CacheWrite1h)
		all.Reasoning += uint64(u.Usage.Reasoning)
	}
	all.Cost, all.Savings = decimal.New(cost, -12), decimal.New(savings, -12)
	byTeam = map[string]decimal.Decimal{}
	for team, c := range teamCost {
		byTeam[team] = decimal.New(c, -12)
	}
	return all, byTeam
}

func queryTotals(t testing.TB, conn driver.Conn, table, eventsExpr, unpricedExpr string) totals {
	t.Helper()
	q := fmt.Sprintf(`SELECT %s, %s, sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
		sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(reasoning_tokens),
		toString(sum(cost_usd)), toString(sum(savings_usd)) FROM %s`, eventsExpr, unpricedExpr, table)
	var got totals
	var cost, savings string
	if err := conn.QueryRow(context.Background(), q).Scan(&got.Events, &got.Unpriced, &got.Input, &got.Output,
		&got.CachedInput, &got.CacheWrite, &got.CacheWrite1h, &got.Reasoning, &cost, &savings); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	got.Cost, got.Savings = decimal.RequireFromString(cost), decimal.RequireFromString(savings)
	return got
}

type ingestResponse struct {
	Accepted int               `json:"accepted"`
	Rejected []event.Rejection `json:"rejected"`
}

// TestEndToEnd sends 200,000+ events through the HTTP API and the Go emitter library into the
// single-process pipeline and checks that ClickHouse holds exactly the expected events and
// sums — count, every token class, cost and savings to the last digit — in usage_events,
// spend_1m and spend_1d, and that every invalid event was reported back with its reason.
func TestEndToEnd(t *testing.T) {
	const httpEvents, emitEvents, batchSize, clients = 150_000, 60_000, 1000, 4
	conn := openClickHouse(t)
	db := freshDatabase(t, conn)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", ClickHouseDSN: clickhouseDSN(), Database: db,
		Partitions: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := p.Wait(); err != nil {
			t.Errorf("pipeline stopped with: %v", err)
		}
	}()

	now := time.Now().UTC()
	var tally loadgen.Tally
	var mu sync.Mutex

	// HTTP: batches of 1,000, NDJSON and JSON arrays alternately, several clients at once.
	httpCfg := loadgen.DefaultConfig(now)
	httpCfg.Seed = 1
	gen := loadgen.New(httpCfg)
	bodies := make(chan []loadgen.Item, clients)
	go func() {
		defer close(bodies)
		for sent := 0; sent < httpEvents; sent += batchSize {
			items := make([]loadgen.Item, batchSize)
			for i := range items {
				items[i] = gen.Next()
			}
			bodies <- items
		}
	}()
	var wg sync.WaitGroup
	url := "http://" + p.CollectorAddr() + "/v1/events"
	var rejected, invalid int
	var firstValid []event.Usage
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for items := range bodies {
				body, ctype := loadgen.NDJSON(items), event.ContentNDJSON
				if n++; n%2 == 0 {
					body, ctype = loadgen.JSONArray(items), event.ContentJSON
				}
				resp := post(t, url, ctype, body)
				mu.Lock()
				tally.Add(items...)
				for _, it := range items {
					if it.Kind == loadgen.Invalid {
						invalid++
					} else if len(firstValid) < 500 && it.Kind == loadgen.Valid {
						firstValid = append(firstValid, it.Event)
					}
				}
				for _, r := range resp.Rejected {
					rejected++
					if r.Index < 0 || r.Index >= len(items) || items[r.Index].Kind != loadgen.Invalid || r.Error == "" {
						t.Errorf("rejection %+v does not name an invalid event of its body", r)
					}
				}
				if resp.Accepted+len(resp.Rejected) != len(items) {
					t.Errorf("accepted %d + rejected %d != %d events sent", resp.Accepted, len(resp.Rejected), len(items))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if rejected != invalid || invalid == 0 {
		t.Errorf("%d events rejected, want every one of the %d invalid events", rejected, invalid)
	}

	// The Go emitter library, straight to JetStream: its own traffic, plus the first 500 valid
	// HTTP events sent again through this second path (counted once).
	em, err := emit.New(p.NATS(), emit.Options{Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	emitCfg := loadgen.DefaultConfig(now)
	emitCfg.Seed, emitCfg.InvalidShare = 2, 0
	egen := loadgen.New(emitCfg)
	for i := 0; i < emitEvents; i++ {
		it := egen.Next()
		if err := emitRetrying(em, it.Event); err != nil {
			t.Fatalf("emit %s: %v", it.Event.ID, err)
		}
		tally.Add(it)
	}
	for _, u := range firstValid {
		if err := emitRetrying(em, u); err != nil {
			t.Fatal(err)
		}
	}
	closeCtx, closeCancel := context.WithTimeout(ctx, time.Minute)
	if err := em.Close(closeCtx); err != nil {
		t.Fatalf("emitter close: %v", err)
	}
	closeCancel()

	events := tally.Events()
	if len(events) < 200_000 {
		t.Fatalf("only %d unique valid events generated; the test wants at least 200,000", len(events))
	}
	want, wantByTeam := expectedTotals(loadPriceTable(t), events)
	if want.Unpriced == 0 {
		t.Fatal("the traffic holds no unknown-model events; the test would not cover unpriced events")
	}

	// Wait until every event is queryable, then compare exactly.
	testkit.Eventually(t, 3*time.Minute, "every event queryable", func() bool {
		var n uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".usage_events").Scan(&n)
		return n >= want.Events
	})
	// Counting is not enough: a double could still be on its way. Wait until no message is
	// pending or unacknowledged anywhere in the pipeline, so the totals below are final.
	waitDrained(t, p.NATS())
	for _, c := range []struct{ table, events, unpriced string }{
		{db + ".usage_events", "count()", "sum(priced = 0)"},
		{db + ".spend_1m", "sum(events)", "sum(unpriced_events)"},
		{db + ".spend_1d", "sum(events)", "sum(unpriced_events)"},
	} {
		if got := queryTotals(t, conn, c.table, c.events, c.unpriced); !got.equal(want) {
			t.Errorf("%s:\n got %s\nwant %s", c.table, got, want)
		}
	}
	var distinct uint64
	if err := conn.QueryRow(context.Background(), "SELECT uniqExact(event_id) FROM "+db+".usage_events").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if distinct != want.Events {
		t.Errorf("usage_events holds %d distinct ids, want %d", distinct, want.Events)
	}
	rows, err := conn.Query(context.Background(), "SELECT team, toString(sum(cost_usd)) FROM "+db+".spend_1m GROUP BY team")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	teams := 0
	for rows.Next() {
		var team, cost string
		if err := rows.Scan(&team, &cost); err != nil {
			t.Fatal(err)
		}
		teams++
		if w := wantByTeam[team]; !decimal.RequireFromString(cost).Equal(w) {
			t.Errorf("team %q: cost %s, want %s", team, cost, w)
		}
	}
	if teams != len(wantByTeam) || teams < 10 {
		t.Errorf("spend_1m has %d teams, want %d (at least 10)", teams, len(wantByTeam))
	}
}

// waitDrained waits until every consumer of USAGE_RAW and USAGE_ENRICHED has delivered and
// seen acknowledged every message.
func waitDrained(t testing.TB, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	testkit.EventuallyEquals(t, time.Minute, "a consumer with messages pending or unacknowledged", "", func() string {
		busy := ""
		for _, name := range []string{stream.Raw, stream.Enriched} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			for info := range s.ListConsumers(ctx).Info() {
				if info.NumPending != 0 || info.NumAckPending != 0 {
					busy = fmt.Sprintf("%s/%s: %d pending, %d unacknowledged", name, info.Name, info.NumPending, info.NumAckPending)
				}
			}
		}
		return busy
	})
}

func post(t testing.TB, url, ctype string, body []byte) ingestResponse {
	t.Helper()
	for attempt := 0; ; attempt++ {
		resp, err := http.Post(url, ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < 50 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(data)))
		}
		var r ingestResponse
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("response %q: %v", data, err)
		}
		return r
	}
}

// emitRetrying waits while the emitter's bounded buffer is full, as a service that must not
// lose an event would.
func emitRetrying(em *emit.Emitter, u event.Usage) error {
	for {
		err := em.Emit(u)
		if err != emit.ErrBufferFull {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}
