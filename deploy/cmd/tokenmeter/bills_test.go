package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestBillsSyncImportDiff: a seeded month of metered events, an OpenAI report server on
// loopback (reached by "bills sync" with the key from a file) and a CSV export of Bedrock's
// bill; "bills diff -month 2026-11" prints exactly the known differences, and a second sync
// writes nothing.
func TestBillsSyncImportDiff(t *testing.T) {
	ctx := context.Background()
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	if _, err := migrate.Apply(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	// Metered: gpt-4o on Nov 10 (2 events, one of them estimated by the proxy: a cut stream)
	// and Nov 11 (1); a Bedrock model on Nov 10, one event unpriced.
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".usage_events (event_id, time, provider, model, input_tokens, cached_input_tokens, output_tokens, cost_usd, priced, estimated)")
	if err != nil {
		t.Fatal(err)
	}
	at := func(day, hour int) time.Time { return time.Date(2026, 11, day, hour, 0, 0, 0, time.UTC) }
	for _, e := range []struct {
		id              string
		at              time.Time
		provider, model string
		in, cached, out uint64
		cost            string
		priced, est     uint8
	}{
		{"e1", at(10, 9), "openai", "gpt-4o-2024-08-06", 1000, 200, 100, "0.004", 1, 0},
		{"e2", at(10, 10), "openai", "gpt-4o-2024-08-06", 500, 0, 50, "0.002", 1, 1},
		{"e3", at(11, 10), "openai", "gpt-4o-2024-08-06", 100, 0, 10, "0.0005", 1, 0},
		{"e4", at(10, 11), "bedrock", "anthropic.claude-3-haiku", 4000, 0, 400, "0.0015", 1, 0},
		{"e5", at(10, 12), "bedrock", "anthropic.claude-3-haiku", 100, 0, 10, "0", 0, 0},
	} {
		if err := b.Append(e.id, e.at, e.provider, e.model, e.in, e.cached, e.out, decimal.RequireFromString(e.cost), e.priced, e.est); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	// Billed by OpenAI: Nov 10 has 300 more uncached input tokens than metered (a call that
	// escaped the meter) and costs 0.0075; Nov 11 matches.
	page := func(start int64, results string) string {
		return fmt.Sprintf(`{"object":"bucket","start_time":%d,"end_time":%d,"results":[%s]}`, start, start+86400, results)
	}
	nov10, nov11 := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC).Unix()
	reports := map[string]string{
		"/v1/organization/usage/completions": `{"object":"page","data":[` +
			page(nov10, `{"object":"organization.usage.completions.result","input_tokens":1800,"output_tokens":150,"input_cached_tokens":200,"num_model_requests":3,"project_id":"proj_1","api_key_id":"key_1","model":"gpt-4o-2024-08-06","batch":false}`) + "," +
			page(nov11, `{"object":"organization.usage.completions.result","input_tokens":100,"output_tokens":10,"input_cached_tokens":0,"num_model_requests":1,"project_id":"proj_1","api_key_id":"key_1","model":"gpt-4o-2024-08-06","batch":false}`) +
			`],"has_more":false,"next_page":null}`,
		"/v1/organization/usage/embeddings": `{"object":"page","data":[` + page(nov10, "") + "," + page(nov11, "") + `],"has_more":false,"next_page":null}`,
		"/v1/organization/costs": `{"object":"page","data":[` +
			page(nov10, `{"object":"organization.costs.result","amount":{"value":0.0075,"currency":"usd"},"line_item":"gpt-4o-2024-08-06, input","project_id":"proj_1"}`) + "," +
			page(nov11, `{"object":"organization.costs.result","amount":{"value":0.0005,"currency":"usd"},"line_item":"gpt-4o-2024-08-06, input","project_id":"proj_1"}`) +
			`],"has_more":false,"next_page":null}`,
	}
	var requests int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		if r.Header.Get("Authorization") != "Bearer sk-admin-from-file" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, reports[r.URL.Path])
	}))
	defer srv.Close()
	keyFile := filepath.Join(t.TempDir(), "openai-admin-key")
	if err := os.WriteFile(keyFile, []byte("sk-admin-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENMETER_ANTHROPIC_ADMIN_KEY", "")
	clock := func() time.Time { return time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC) }
	common := []string{"-clickhouse", chtest.DSN(), "-database", db}
	bills := func(want string, args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := billsTo(ctx, &out, &errOut, clock, append(args[:1:1], append(common, args[1:]...)...)); err != nil {
			t.Fatalf("bills %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		if out.String() != want {
			t.Errorf("bills %s:\n%s\nwant:\n%s", strings.Join(args, " "), out.String(), want)
		}
	}
	sync := []string{"sync", "-from", "2026-11-10", "-to", "2026-11-12", "-openai-admin-key-file", keyFile, "-openai-url", srv.URL}
	bills("openai 2026-11-10 .. 2026-11-11: 6 periods, 6 written (7 rows), 0 unchanged\n", sync...)
	bills("openai 2026-11-10 .. 2026-11-11: 6 periods, 0 written (0 rows), 6 unchanged\n", sync...)
	if requests != 6 {
		t.Errorf("%d requests to the report server, want 6", requests)
	}
	// OpenAI corrects Nov 11's cost; the key now comes from the environment. Only that
	// period is written again, and it replaces the old one.
	reports["/v1/organization/costs"] = strings.Replace(reports["/v1/organization/costs"], `"value":0.0005,`, `"value":0.0006,`, 1)
	t.Setenv("TOKENMETER_OPENAI_ADMIN_KEY", "sk-admin-from-file")
	bills("openai 2026-11-10 .. 2026-11-11: 6 periods, 1 written (1 rows), 5 unchanged\n", "sync", "-from", "2026-11-10", "-to", "2026-11-12", "-openai-url", srv.URL)
	reports["/v1/organization/costs"] = strings.Replace(reports["/v1/organization/costs"], `"value":0.0006,`, `"value":0.0005,`, 1)
	bills("openai 2026-11-10 .. 2026-11-11: 6 periods, 1 written (1 rows), 5 unchanged\n", "sync", "-from", "2026-11-10", "-to", "2026-11-12", "-openai-url", srv.URL)
	t.Setenv("TOKENMETER_OPENAI_ADMIN_KEY", "")
	var errOut bytes.Buffer
	dir := t.TempDir()
	err = billsTo(ctx, &errOut, &errOut, clock, append([]string{"sync", "-anthropic-admin-key-file", dir}, common...))
	if want := "anthropic admin key: key file " + dir + " is not a regular file"; err == nil || err.Error() != want {
		t.Errorf("sync with a directory as key file: error = %v, want %s", err, want)
	}
	err = billsTo(ctx, &errOut, &errOut, clock, append([]string{"sync"}, common...))
	if want := "no admin key: set TOKENMETER_OPENAI_ADMIN_KEY or -openai-admin-key-file, TOKENMETER_ANTHROPIC_ADMIN_KEY or -anthropic-admin-key-file"; err == nil || err.Error() != want {
		t.Errorf("sync without a key: error = %v, want %s", err, want)
	}

	csvFile := filepath.Join(t.TempDir(), "bedrock.csv")
	if err := os.WriteFile(csvFile, []byte("day,provider,model,token_class,tokens,cost_usd,line_item\n"+
		"2026-11-10,bedrock,anthropic.claude-3-haiku,input_uncached,4100,0.001025,USE1-Claude3Haiku-input-tokens\n"+
		"2026-11-10,Bedrock,anthropic.claude-3-haiku,output,410,0.0005125,USE1-Claude3Haiku-output-tokens\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bills("bedrock_cur: 1 days, 1 written (2 rows), 0 unchanged\n", "import", "-source", "bedrock_cur", csvFile)

	bills(`  provider                     model  events  unpriced  estimated  metered tokens  billed tokens  metered USD  billed USD  difference USD   share
   bedrock  anthropic.claude-3-haiku       2         1          0            4510           4510     0.001500    0.001538        0.000038   2.44%
    openai         gpt-4o-2024-08-06       3         0          1            1760           2060     0.006500    0.008000        0.001500  18.75%
     total                                 5         1          1            6270           6570     0.008000    0.009538        0.001538  16.12%
`, "diff", "-month", "2026-11")
	bills(`         day  provider                     model  events  unpriced  estimated  metered tokens  billed tokens  metered USD  billed USD  difference USD   share
  2026-11-10   bedrock  anthropic.claude-3-haiku       2         1          0            4510           4510     0.001500    0.001538        0.000038   2.44%
  2026-11-10    openai         gpt-4o-2024-08-06       2         0          1            1650           1950     0.006000    0.007500        0.001500  20.00%
  2026-11-11    openai         gpt-4o-2024-08-06       1         0          0             110            110     0.000500    0.000500        0.000000   0.00%
                 total                                 5         1          1            6270           6570     0.008000    0.009538        0.001538  16.12%
`, "diff", "-month", "2026-11", "-daily")
}

// tokenmeter run -bills-sync-every: a sync at once and then every interval, each logged; a
// failed one is logged and the next runs anyway; cancelling stops it.
func TestSyncBillsEvery(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan struct{})
	go func() {
		syncBillsEvery(ctx, 10*time.Millisecond, func(context.Context) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 2 {
				return "", errors.New("openai answered 503")
			}
			return fmt.Sprintf("openai run %d", calls), nil
		}, log)
		close(done)
	}()
	testkit.Eventually(t, 10*time.Second, "three runs", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= 3 })
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	want := "level=INFO msg=\"bills synced\" report=\"openai run 1\"\n" +
		"level=WARN msg=\"bills sync failed; trying again at the next run\" report=\"\" err=\"openai answered 503\" next_in=10ms\n" +
		"level=INFO msg=\"bills synced\" report=\"openai run 3\"\n"
	if got := logs.String(); !strings.HasPrefix(got, want) {
		t.Errorf("logs:\n%s\nwant them to start with:\n%s", got, want)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestOpenClickHouseForWriting: the commands that write (bills sync and import, pricing
// publish, rerate) open ClickHouse with de-duplication of inserted blocks off and synchronous
// Distributed inserts, which a cluster needs and a single server ignores, whatever their DSN
// leaves out.
func TestOpenClickHouseForWriting(t *testing.T) {
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	w, err := openClickHouse(context.Background(), chtest.DSN(), db, false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	chtest.CheckWriterSettings(t, w)
}
