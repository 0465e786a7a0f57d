package dashboard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// testServer serves a dashboard over the seeded database, at summarytest.Now, with alerts and
// budgets from js (nil: none).
func testServer(tb testing.TB, js jetstream.JetStream) (*httptest.Server, string) {
	tb.Helper()
	conn := chtest.Conn(tb)
	db := summarytest.Seed(tb, conn, summarytest.Events())
	s, err := New(Config{Database: db, Now: summarytest.Now}, conn, js)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(s)
	tb.Cleanup(srv.Close)
	return srv, db
}

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// jetStream starts an embedded NATS server and returns a JetStream context on it.
func jetStream(tb testing.TB) jetstream.JetStream {
	tb.Helper()
	nc := natstest.Connect(tb, natstest.Start(tb, tb.TempDir(), -1))
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func put(tb testing.TB, js jetstream.JetStream, bucket string, entries map[string]string) {
	tb.Helper()
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
	if err != nil {
		tb.Fatalf("create bucket %s: %v", bucket, err)
	}
	for k, v := range entries {
		if _, err := kv.PutString(ctx, k, v); err != nil {
			tb.Fatalf("put %s in %s: %v", k, bucket, err)
		}
	}
}

func TestAPI(t *testing.T) {
	srv, _ := testServer(t, nil)
	for _, c := range []struct {
		path   string
		status int
		want   string
	}{
		{"/api/v1/spend?by=team&from=2026-11-01&to=2026-11-20", 200,
			`{"by":"team","from":"2026-11-01","to":"2026-11-20","lines":[` +
				`{"key":"support","events":3,"cost_usd":"6.250000000001","unpriced_events":0},` +
				`{"key":"search","events":5,"cost_usd":"3.5","unpriced_events":1},` +
				`{"key":"(untagged)","events":1,"cost_usd":"0.5","unpriced_events":0}]}`},
		{"/api/v1/spend", 200, // default: by team over the 30 days ending today, which include October 31
			`{"by":"team","from":"2026-10-22","to":"2026-11-20","lines":[` +
				`{"key":"search","events":6,"cost_usd":"103.5","unpriced_events":1},` +
				`{"key":"support","events":3,"cost_usd":"6.250000000001","unpriced_events":0},` +
				`{"key":"(untagged)","events":1,"cost_usd":"0.5","unpriced_events":0}]}`},
		{"/api/v1/spend?by=model&days=1&team=search", 200,
			`{"by":"model","from":"2026-11-20","to":"2026-11-20","lines":[{"key":"openai/gpt-4o","events":2,"cost_usd":"1.75","unpriced_events":0}]}`},
		{"/api/v1/spend?by=cost_center&to=2026-11-09&limit=1", 200,
			`{"by":"cost_center","from":"2026-10-11","to":"2026-11-09","lines":[{"key":"cc-search","events":2,"cost_usd":"101","unpriced_events":0}]}`},
		{"/api/v1/daily?days=3", 200,
			`{"by":"model","days":["2026-11-18","2026-11-19","2026-11-20"],"series":[` +
				`{"key":"openai/gpt-4o","cost_usd":["0","0.75","1.75"],"total_usd":"2.5"},` +
				`{"key":"anthropic/claude-sonnet-4-5","cost_usd":["0","0","2.25"],"total_usd":"2.25"},` +
				`{"key":"acme/acme-llm-7","cost_usd":["0","0","0"],"total_usd":"0"}]}`},
		{"/api/v1/daily?by=env&days=2&env=(untagged)", 200,
			`{"by":"env","days":["2026-11-19","2026-11-20"],"series":[]}`},
		{"/api/v1/trend", 200,
			`{"days":["2026-11-14","2026-11-15","2026-11-16","2026-11-17","2026-11-18","2026-11-19","2026-11-20"],` +
				`"cost_usd":["0","0","0.5","0","0","0.75","4"],"total_usd":"5.25","previous_total_usd":"5","change_pct":"5.0"}`},
		{"/api/v1/trend?days=2&team=support", 200,
			`{"days":["2026-11-19","2026-11-20"],"cost_usd":["0","2.25"],"total_usd":"2.25","previous_total_usd":"0","change_pct":""}`},
		{"/api/v1/movers?by=team", 200,
			`{"by":"team","days":7,"movers":[` +
				`{"key":"support","current_usd":"2.25","previous_usd":"4","delta_usd":"-1.75","change_pct":"-43.8"},` +
				`{"key":"search","current_usd":"2.5","previous_usd":"1","delta_usd":"1.5","change_pct":"150.0"},` +
				`{"key":"(untagged)","current_usd":"0.5","previous_usd":"0","delta_usd":"0.5","change_pct":""}]}`},
		{"/api/v1/unpriced?days=7", 200,
			`{"from":"2026-11-14","to":"2026-11-20","models":[{"provider":"acme","model":"acme-llm-7","events":1,"first_day":"2026-11-18","last_day":"2026-11-18"}]}`},
		{"/api/v1/coverage?days=1", 200,
			`{"from":"2026-11-20","to":"2026-11-20","events":3,"cost_usd":"4","attributed_usd":"4","share_pct":"100.0","tags":[` +
				`{"tag":"team","tagged_events":3,"tagged_usd":"4","share_pct":"100.0"},{"tag":"feature","tagged_events":3,"tagged_usd":"4","share_pct":"100.0"},` +
				`{"tag":"env","tagged_events":3,"tagged_usd":"4","share_pct":"100.0"},{"tag":"cost_center","tagged_events":3,"tagged_usd":"4","share_pct":"100.0"}],"by_team":[` +
				`{"team":"support","cost_usd":"2.25","attributed_usd":"2.25","share_pct":"100.0"},{"team":"search","cost_usd":"1.75","attributed_usd":"1.75","share_pct":"100.0"}]}`},
		{"/api/v1/metered?days=1", 200, // no call estimated: every share is 100 % (summary.TestMeteredShare has estimates)
			`{"by":"team","from":"2026-11-20","to":"2026-11-20","lines":[` +
				`{"key":"support","events":1,"estimated_events":0,"cost_usd":"2.25","estimated_usd":"0","metered_share_pct":"100.0"},` +
				`{"key":"search","events":2,"estimated_events":0,"cost_usd":"1.75","estimated_usd":"0","metered_share_pct":"100.0"}]}`},
		{"/api/v1/metered?by=tag.region", 400, `{"error":"by \"tag.region\": want one of [team feature env cost_center traffic provider model]"}`},
		{"/api/v1/spend?by=tag.region&days=7&team=search", 200,
			`{"by":"tag.region","from":"2026-11-14","to":"2026-11-20","lines":[` +
				`{"key":"eu","events":2,"cost_usd":"1.75","unpriced_events":0},{"key":"(untagged)","events":2,"cost_usd":"0.75","unpriced_events":1}]}`},
		{"/api/v1/spend?by=tag.x%27y", 400, `{"error":"tag \"x'y\": want 1 to 64 of a-z, 0-9, '_', '.', '-'"}`},
		{"/api/v1/daily?by=tag.region", 400, `{"error":"by \"tag.region\": want one of [team feature env cost_center traffic provider model]"}`},
		{"/api/v1/alerts", 200, `{"alerts":[],"invalid":[]}`},
		{"/api/v1/budgets", 200, `{"budgets":[],"invalid":[]}`},

		{"/api/v1/spend?colour=red", 400, `{"error":"unknown parameter \"colour\""}`},
		{"/api/v1/spend?by=colour", 400, `{"error":"by \"colour\": want one of [team feature env cost_center traffic provider model]"}`},
		{"/api/v1/spend?team=a&team=b", 400, `{"error":"parameter \"team\" given 2 times"}`},
		{"/api/v1/spend?from=2026-13-01&to=yesterday", 400,
			`{"error":"from \"2026-13-01\": want a date YYYY-MM-DD\nto \"yesterday\": want a date YYYY-MM-DD"}`},
		{"/api/v1/spend?from=2026-11-20&to=2026-11-01", 400, `{"error":"range 2026-11-20..2026-11-01 ends before it starts"}`},
		{"/api/v1/spend?days=7&from=2026-11-01", 400, `{"error":"give either days or from/to, not both"}`},
		{"/api/v1/daily?days=0", 400, `{"error":"days \"0\": want an integer within 1..1098"}`},
		{"/api/v1/movers?limit=-1&days=1e9", 400,
			`{"error":"days \"1e9\": want an integer within 1..366\nlimit \"-1\": want an integer within 1..1000"}`},
		{"/api/v1/trend?days=367", 400, `{"error":"days \"367\": want an integer within 1..366"}`},
		{"/api/v1/alerts?state=firing", 400, `{"error":"unknown parameter \"state\""}`},
	} {
		status, body := get(t, srv.URL+c.path)
		if status != c.status || body != c.want {
			t.Errorf("GET %s: %d\n%s\nwant %d\n%s", c.path, status, body, c.status, c.want)
		}
	}
}

func TestAPIHostileFilterValues(t *testing.T) {
	srv, _ := testServer(t, nil)
	for _, v := range []string{"x'%20OR%201=1%20--", "%5C'", "%00", strings.Repeat("a", 5000)} {
		status, body := get(t, srv.URL+"/api/v1/spend?days=30&team="+v)
		if want := `{"by":"team","from":"2026-10-22","to":"2026-11-20","lines":[]}`; status != 200 || body != want {
			t.Errorf("team=%.40s: %d %s, want 200 %s", v, status, body, want)
		}
	}
}

func TestPageAndAssetsAreServed(t *testing.T) {
	srv, _ := testServer(t, nil)
	for _, c := range []struct{ path, contentType, contains string }{
		{"/", "text/html; charset=utf-8", `<canvas id="chart-daily"`},
		{"/app.js", "text/javascript; charset=utf-8", "tokenmeter"},
		{"/style.css", "text/css; charset=utf-8", ".chart"},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.contentType || !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: %d %q, %d bytes; want 200 %q containing %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), c.contentType, c.contains)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, csp)
		}
	}
	if status, _ := get(t, srv.URL+"/nothing-here"); status != 404 {
		t.Errorf("GET /nothing-here: %d, want 404", status)
	}
}

func TestAlertsAndBudgetsFromTheAlerterBuckets(t *testing.T) {
	js := jetStream(t)
	put(t, js, kv.Alerts, map[string]string{
		"fp-1": `{"rule":"team-spike","labels":{"team":"search"},"state":"firing","since":"2026-11-20T11:00:00Z","value":"12.5","summary":"search spends 5x its baseline","updated":"2026-11-20T11:59:00Z"}`,
		"fp-2": `{"rule":"unpriced","labels":{"model":"acme-llm-7"},"state":"pending","since":"2026-11-20T10:00:00Z","value":"3","summary":"1 unpriced model","updated":"2026-11-20T11:59:00Z"}`,
		"fp-3": `{"rule":"team-spike","labels":{"team":"support"},"state":"resolved","since":"2026-11-19T10:00:00Z","value":"1","summary":"over","updated":"2026-11-19T12:00:00Z"}`,
		"fp-4": `{"rule":"team-spike","labels":{"team":"ads"},"state":"firing","since":"2026-11-20T09:00:00Z","value":"7","summary":"ads spends 3x its baseline","updated":"2026-11-20T11:59:00Z"}`,
		"fp-5": `not json`,
		"fp-6": `{"rule":"x","state":"firing","value":"12abc"}`,
		"fp-7": `{"rule":"x","state":"firing","value":12.5}`,
	})
	put(t, js, kv.Budgets, map[string]string{
		"support-monthly": `{"name":"support-monthly","scope":"team=support","period_start":"2026-11-01T00:00:00Z","limit_usd":"1000.000000000000","spent_usd":"6.250000000001","forecast_usd":"9.375000000002","forecast_method":"run_rate","state":"ok","policy":"refuse","period_end":"2026-12-01T00:00:00Z"}`,
		"search-monthly":  `{"name":"search-monthly","scope":"team=search","period_start":"2026-11-01T00:00:00Z","limit_usd":"5.000000000000","spent_usd":"5.500000000000","forecast_usd":"8.250000000000","state":"hard_capped"}`,
		"numbers":         `{"name":"numbers","scope":"team=a","limit_usd":5,"spent_usd":"1","forecast_usd":"1","state":"ok"}`,
		"object-scope":    `{"name":"object-scope","scope":{"team":"a"},"limit_usd":"5","state":"ok"}`,
		"not-decimal":     `{"name":"not-decimal","scope":"team=a","limit_usd":"5","spent_usd":"1e3","forecast_usd":"x","state":"ok"}`,
	})
	srv, _ := testServer(t, js)
	status, body := get(t, srv.URL+"/api/v1/alerts")
	want := `{"alerts":[` +
		`{"fingerprint":"fp-4","rule":"team-spike","labels":{"team":"ads"},"state":"firing","since":"2026-11-20T09:00:00Z","value":"7","summary":"ads spends 3x its baseline","updated":"2026-11-20T11:59:00Z"},` +
		`{"fingerprint":"fp-1","rule":"team-spike","labels":{"team":"search"},"state":"firing","since":"2026-11-20T11:00:00Z","value":"12.5","summary":"search spends 5x its baseline","updated":"2026-11-20T11:59:00Z"},` +
		`{"fingerprint":"fp-2","rule":"unpriced","labels":{"model":"acme-llm-7"},"state":"pending","since":"2026-11-20T10:00:00Z","value":"3","summary":"1 unpriced model","updated":"2026-11-20T11:59:00Z"}],` +
		`"invalid":[{"key":"fp-5","error":"alert \"fp-5\": decode: invalid character 'o' in literal null (expecting 'u')"},` +
		`{"key":"fp-6","error":"alert \"fp-6\": amount \"12abc\" is not a decimal number"},` +
		`{"key":"fp-7","error":"alert \"fp-7\": decode: json: cannot unmarshal number into Go struct field Alert.value of type string"}]}`
	if status != 200 || body != want {
		t.Errorf("alerts: %d\n%s\nwant\n%s", status, body, want)
	}
	status, body = get(t, srv.URL+"/api/v1/budgets")
	want = `{"budgets":[` +
		`{"name":"search-monthly","scope":"team=search","period_start":"2026-11-01T00:00:00Z","limit_usd":"5.000000000000","spent_usd":"5.500000000000","forecast_usd":"8.250000000000","state":"hard_capped"},` +
		`{"name":"support-monthly","scope":"team=support","period_start":"2026-11-01T00:00:00Z","limit_usd":"1000.000000000000","spent_usd":"6.250000000001","forecast_usd":"9.375000000002","state":"ok"}],` +
		`"invalid":[{"key":"not-decimal","error":"budget \"not-decimal\": amount \"1e3\" is not a decimal number\namount \"x\" is not a decimal number"},` +
		`{"key":"numbers","error":"budget \"numbers\": decode: json: cannot unmarshal number into Go struct field Budget.limit_usd of type string"},` +
		`{"key":"object-scope","error":"budget \"object-scope\": decode: json: cannot unmarshal object into Go struct field Budget.scope of type string"}]}`
	if status != 200 || body != want {
		t.Errorf("budgets: %d\n%s\nwant\n%s", status, body, want)
	}
}

func TestAlertsAndBudgetsWithoutTheirBuckets(t *testing.T) {
	srv, _ := testServer(t, jetStream(t))
	for path, want := range map[string]string{
		"/api/v1/alerts":  `{"alerts":[],"invalid":[]}`,
		"/api/v1/budgets": `{"budgets":[],"invalid":[]}`,
	} {
		if status, body := get(t, srv.URL+path); status != 200 || body != want {
			t.Errorf("GET %s: %d %s, want 200 %s", path, status, body, want)
		}
	}
}

func TestDecodeEntries(t *testing.T) {
	for _, c := range []struct {
		value, want string
	}{
		{`{"rule":"r","state":"firing","value":null}`, ""},
		{`{"rule":"r","state":"firing","value":"-500.5"}`, ""},
		{`{"rule":"r","state":"firing","value":-0.5e3}`, `alert "k": decode: json: cannot unmarshal number into Go struct field Alert.value of type string`},
		{`{"rule":"r","state":"firing"} {}`, `alert "k": decode: trailing data after the JSON object`},
		{`{"rule":"r"}`, `alert "k": rule and state are required`},
		{`{"rule":"r","state":"firing","value":"1]"}`, `alert "k": amount "1]" is not a decimal number`},
		{`{"rule":"r","state":"firing","value":"\"1\""}`, `alert "k": amount "\"1\"" is not a decimal number`},
		{`{"rule":"r","state":"firing","value":true}`, `alert "k": decode: json: cannot unmarshal bool into Go struct field Alert.value of type string`},
		{`{"rule":"r","state":"firing","since":"yesterday"}`, `alert "k": decode: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
		{`{"rule":"r","state":"firing","labels":{"a":1}}`, `alert "k": decode: json: cannot unmarshal number into Go struct field Alert.labels of type string`},
		{`[]`, `alert "k": decode: json: cannot unmarshal array into Go value of type kv.Alert`},
		{`{"rule":"r","state":"firing","summary":"` + strings.Repeat("x", maxEntryBytes) + `"}`, `alert "k": value of 65578 bytes exceeds 65536`},
	} {
		_, err := DecodeAlert("k", []byte(c.value))
		if got := errText(err); got != c.want {
			t.Errorf("DecodeAlert(%.60s):\n got %s\nwant %s", c.value, got, c.want)
		}
	}
	b, err := DecodeBudget("team-a", []byte(`{"limit_usd":"100.000000000001"}`))
	if err != nil || b.Name != "team-a" || b.LimitUSD != "100.000000000001" || b.Scope != "" {
		t.Errorf("DecodeBudget without a name: %+v, %v", b, err)
	}
	if _, err := DecodeBudget("b", []byte(`{"spent_usd":{}}`)); errText(err) != `budget "b": decode: json: cannot unmarshal object into Go struct field Budget.spent_usd of type string` {
		t.Errorf("DecodeBudget with an object amount: %v", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzDecodeEntries feeds arbitrary bucket values to both decoders: they must return a value
// or an error, never panic, and an accepted amount must be decimal text.
func FuzzDecodeEntries(f *testing.F) {
	f.Add([]byte(`{"rule":"r","labels":{"team":"a"},"state":"firing","since":"2026-11-20T11:00:00Z","value":"12.5","summary":"s","updated":"2026-11-20T11:59:00Z"}`))
	f.Add([]byte(`{"name":"b","scope":"team=a","period_start":"2026-11-01T00:00:00Z","limit_usd":"5","spent_usd":"3.5","forecast_usd":null,"state":"ok"}`))
	f.Add([]byte(`{"value":"1e400"}`))
	f.Add([]byte(`{"value":"-"}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		if a, err := DecodeAlert("k", value); err == nil {
			if a.Value != "" && !decimalText.MatchString(string(a.Value)) {
				t.Errorf("alert value %q is not decimal text", a.Value)
			}
		}
		if b, err := DecodeBudget("k", value); err == nil {
			for _, amount := range []Amount{b.LimitUSD, b.SpentUSD, b.ForecastUSD} {
				if amount != "" && !decimalText.MatchString(string(amount)) {
					t.Errorf("budget amount %q is not decimal text", amount)
				}
			}
		}
	})
}

// FuzzQueryParameters feeds arbitrary query strings to the parameter parsers: each answers a
// value or a 400 error, never panics, and an accepted range is valid.
func FuzzQueryParameters(f *testing.F) {
	f.Add("from=2026-11-01&to=2026-11-20&by=team&limit=10&team=search")
	f.Add("days=7")
	f.Add("days=99999999999999999999&from=2026-02-30")
	f.Add("by=%00&limit=-0&to=0000-01-01")
	f.Fuzz(func(t *testing.T, raw string) {
		values, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q := query{values: values, now: summarytest.Now()}
		if r, err := q.dateRange(); err == nil {
			if err := r.Validate(); err != nil {
				t.Errorf("%q: accepted an invalid range: %v", raw, err)
			}
		} else if !errors.As(err, new(badRequest)) {
			t.Errorf("%q: range error %v is not a bad request", raw, err)
		}
		if n, err := q.number("limit", 10, 1, 1000); err == nil && (n < 1 || n > 1000) {
			t.Errorf("%q: accepted limit %d", raw, n)
		}
		if by, err := q.by("team", false); err == nil && !slices.Contains(summary.Dimensions(), by) {
			t.Errorf("%q: accepted by %q", raw, by)
		}
		for k := range q.filter() {
			if !slices.Contains(summary.Dimensions(), k) {
				t.Errorf("%q: filter on %q", raw, k)
			}
		}
	})
}

func TestClickHouseFailureIsAServerError(t *testing.T) {
	s, err := New(Config{Database: "tm_test_does_not_exist", Now: summarytest.Now}, chtest.Conn(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	status, body := get(t, srv.URL+"/api/v1/spend")
	if status != 500 || !strings.HasPrefix(body, `{"error":"query spend by team: `) || !strings.Contains(body, "tm_test_does_not_exist") {
		t.Errorf("GET /api/v1/spend on a missing database: %d %s", status, body)
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := New(Config{Database: "tokenmeter; DROP", QueryTimeout: -time.Second}, nil, nil)
	want := "dashboard config: database name \"tokenmeter; DROP\": want letters, digits and underscores, not starting with a digit\n" +
		"query timeout (-1s) must not be negative"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}
