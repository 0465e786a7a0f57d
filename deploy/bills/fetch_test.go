package bills

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeReports is a provider's report server on loopback: it answers each path from a list of
// pages keyed by the page cursor ("" for the first), and can refuse the first request of a
// path with 429 and a Retry-After.
type fakeReports struct {
	t        testing.TB
	header   http.Header // headers every request must carry
	pages    map[string]map[string]string
	throttle map[string]string // path → Retry-After of a first 429
	mu       sync.Mutex
	queries  []string
}

func (f *fakeReports) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k := range f.header {
		if r.Header.Get(k) != f.header.Get(k) {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
	}
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.Path+"?"+r.URL.RawQuery)
	ra, throttle := f.throttle[r.URL.Path]
	delete(f.throttle, r.URL.Path)
	f.mu.Unlock()
	if throttle {
		w.Header().Set("Retry-After", ra)
		http.Error(w, `{"error":{"type":"rate_limit_error"}}`, http.StatusTooManyRequests)
		return
	}
	body, ok := f.pages[r.URL.Path][r.URL.Query().Get("page")]
	if !ok {
		http.Error(w, "no such page", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, body)
}

// rowLines prints rows one per line, fields separated by |.
func rowLines(rows []Row) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s|%s|%s|%s|%s|%s|%s|%s|%s|%d|%s\n", r.Day.Format(time.DateOnly), r.Source, r.Provider, r.Model, r.Project,
			r.APIKey, r.ServiceTier, r.TokenClass, r.LineItem, r.Tokens, r.CostUSD.StringFixed(usdScale))
	}
	return b.String()
}

func periodLines(ps []Period) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s %s complete=%v\n", p.Source, p.Day.Format(time.DateOnly), p.Complete)
	}
	return b.String()
}

// recordSleeps returns a Sleep that records the waits instead of waiting.
func recordSleeps(waits *[]time.Duration) func(context.Context, time.Duration) error {
	return func(_ context.Context, d time.Duration) error { *waits = append(*waits, d); return nil }
}

// Nov 29 and 30, 2026; the sync runs at noon on the 30th, so the 30th is partial.
var (
	nov29   = time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	nov30   = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	dec1    = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	noon30  = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	twoDays = Range{From: nov29, To: dec1}
)

func TestOpenAIFetch(t *testing.T) {
	f := &fakeReports{
		t:      t,
		header: http.Header{"Authorization": {"Bearer sk-admin-test"}},
		pages: map[string]map[string]string{
			"/v1/organization/usage/completions": {
				"": `{"object":"page","data":[{"object":"bucket","start_time":1795910400,"end_time":1795996800,"results":[
					{"object":"organization.usage.completions.result","input_tokens":1000,"output_tokens":500,"input_cached_tokens":800,"input_audio_tokens":0,"output_audio_tokens":0,"num_model_requests":5,"project_id":"proj_a","user_id":null,"api_key_id":"key_1","model":"gpt-4o-2024-08-06","batch":false},
					{"object":"organization.usage.completions.result","input_tokens":200,"output_tokens":0,"input_cached_tokens":0,"num_model_requests":1,"project_id":"proj_a","user_id":null,"api_key_id":"key_1","model":"gpt-4o-2024-08-06","batch":true}]}],
					"has_more":true,"next_page":"page_AAAAAGdGxdEiJdKOAAAAAGcqsYA="}`,
				"page_AAAAAGdGxdEiJdKOAAAAAGcqsYA=": `{"object":"page","data":[{"object":"bucket","start_time":1795996800,"end_time":1796083200,"results":[
					{"object":"organization.usage.completions.result","input_tokens":10,"output_tokens":20,"input_cached_tokens":0,"num_model_requests":1,"project_id":null,"user_id":null,"api_key_id":null,"model":"gpt-4o-mini","batch":null}]}],
					"has_more":false,"next_page":null}`,
			},
			"/v1/organization/usage/embeddings": {
				"": `{"object":"page","data":[{"object":"bucket","start_time":1795910400,"end_time":1795996800,"results":[]},
					{"object":"bucket","start_time":1795996800,"end_time":1796083200,"results":[{"object":"organization.usage.embeddings.result","input_tokens":7000,"num_model_requests":3,"project_id":"proj_b","user_id":null,"api_key_id":"key_2","model":"text-embedding-3-small"}]}],
					"has_more":false,"next_page":null}`,
			},
			"/v1/organization/costs": {
				"": `{"object":"page","data":[{"object":"bucket","start_time":1795910400,"end_time":1795996800,"results":[
					{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},"line_item":"gpt-4o-2024-08-06, input","project_id":"proj_a"},
					{"object":"organization.costs.result","amount":{"value":0.0123456789012345,"currency":"usd"},"line_item":"gpt-4o-2024-08-06, cached input","project_id":"proj_a"},
					{"object":"organization.costs.result","amount":{"value":1.5e-3,"currency":"usd"},"line_item":"Web search tool calls","project_id":"proj_a"}]}],
					"has_more":false,"next_page":null}`,
			},
		},
		throttle: map[string]string{"/v1/organization/usage/completions": "7"},
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var waits []time.Duration
	o := &OpenAI{BaseURL: srv.URL, AdminKey: "sk-admin-test", Client: Client{Now: func() time.Time { return noon30 }, Sleep: recordSleeps(&waits)}}
	rep, err := o.Fetch(context.Background(), twoDays)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := `2026-11-29|openai_completions|openai|gpt-4o-2024-08-06|proj_a|key_1||input_uncached||200|0.000000000000
2026-11-29|openai_completions|openai|gpt-4o-2024-08-06|proj_a|key_1||input_cached||800|0.000000000000
2026-11-29|openai_completions|openai|gpt-4o-2024-08-06|proj_a|key_1||output||500|0.000000000000
2026-11-29|openai_completions|openai|gpt-4o-2024-08-06|proj_a|key_1|batch|input_uncached||200|0.000000000000
2026-11-30|openai_completions|openai|gpt-4o-mini||||input_uncached||10|0.000000000000
2026-11-30|openai_completions|openai|gpt-4o-mini||||output||20|0.000000000000
2026-11-30|openai_embeddings|openai|text-embedding-3-small|proj_b|key_2||input_uncached||7000|0.000000000000
2026-11-29|openai_costs|openai|gpt-4o-2024-08-06|proj_a|||input_uncached|gpt-4o-2024-08-06, input|0|0.060000000000
2026-11-29|openai_costs|openai|gpt-4o-2024-08-06|proj_a|||input_cached|gpt-4o-2024-08-06, cached input|0|0.012345678901
2026-11-29|openai_costs|openai||proj_a||||Web search tool calls|0|0.001500000000
`
	if got := rowLines(rep.Rows); got != wantRows {
		t.Errorf("rows:\n%s\nwant:\n%s", got, wantRows)
	}
	wantPeriods := `openai_completions 2026-11-29 complete=true
openai_completions 2026-11-30 complete=false
openai_embeddings 2026-11-29 complete=true
openai_embeddings 2026-11-30 complete=false
openai_costs 2026-11-29 complete=true
openai_costs 2026-11-30 complete=false
`
	if got := periodLines(rep.Periods); got != wantPeriods {
		t.Errorf("periods:\n%s\nwant:\n%s", got, wantPeriods)
	}
	if fmt.Sprint(waits) != "[7s]" {
		t.Errorf("waits = %v, want [7s] (the Retry-After of the 429)", waits)
	}
	wantQueries := `/v1/organization/usage/completions?bucket_width=1d&end_time=1796083200&group_by=model&group_by=project_id&group_by=api_key_id&group_by=batch&limit=31&start_time=1795910400
/v1/organization/usage/completions?bucket_width=1d&end_time=1796083200&group_by=model&group_by=project_id&group_by=api_key_id&group_by=batch&limit=31&start_time=1795910400
/v1/organization/usage/completions?bucket_width=1d&end_time=1796083200&group_by=model&group_by=project_id&group_by=api_key_id&group_by=batch&limit=31&page=page_AAAAAGdGxdEiJdKOAAAAAGcqsYA%3D&start_time=1795910400
/v1/organization/usage/embeddings?bucket_width=1d&end_time=1796083200&group_by=model&group_by=project_id&group_by=api_key_id&limit=31&start_time=1795910400
/v1/organization/costs?bucket_width=1d&end_time=1796083200&group_by=project_id&group_by=line_item&limit=31&start_time=1795910400
`
	if got := strings.Join(f.queries, "\n") + "\n"; got != wantQueries {
		t.Errorf("requests:\n%s\nwant:\n%s", got, wantQueries)
	}
}

func TestAnthropicFetch(t *testing.T) {
	f := &fakeReports{
		t:      t,
		header: http.Header{"X-Api-Key": {"sk-ant-admin-test"}, "Anthropic-Version": {"2023-06-01"}},
		pages: map[string]map[string]string{
			"/v1/organizations/usage_report/messages": {
				"": `{"data":[{"starting_at":"2026-11-29T00:00:00Z","ending_at":"2026-11-30T00:00:00Z","results":[
					{"uncached_input_tokens":1500,"cache_creation":{"ephemeral_1h_input_tokens":1000,"ephemeral_5m_input_tokens":500},"cache_read_input_tokens":200,"output_tokens":500,"server_tool_use":{"web_search_requests":0},"api_key_id":"apikey_01","workspace_id":"wrkspc_01","model":"claude-sonnet-4-20250514","service_tier":"standard","context_window":"0-200k"}]}],
					"has_more":true,"next_page":"page_2"}`,
				"page_2": `{"data":[{"starting_at":"2026-11-30T00:00:00Z","ending_at":"2026-12-01T00:00:00Z","results":[
					{"uncached_input_tokens":9,"cache_creation":{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0},"cache_read_input_tokens":0,"output_tokens":1,"api_key_id":null,"workspace_id":null,"model":"claude-haiku-4-5","service_tier":"batch","context_window":"0-200k"}]}],
					"has_more":false,"next_page":null}`,
			},
			"/v1/organizations/cost_report": {
				"": `{"data":[{"starting_at":"2026-11-29T00:00:00Z","ending_at":"2026-11-30T00:00:00Z","results":[
					{"currency":"USD","amount":"123.45","workspace_id":"wrkspc_01","description":"Claude Sonnet 4 Usage - Input Tokens","cost_type":"tokens","context_window":"0-200k","model":"claude-sonnet-4-20250514","service_tier":"standard","token_type":"uncached_input_tokens"},
					{"currency":"USD","amount":"0.0000000000005","workspace_id":null,"description":"Claude Sonnet 4 Usage - Output Tokens","cost_type":"tokens","context_window":"0-200k","model":"claude-sonnet-4-20250514","service_tier":"standard","token_type":"output_tokens"},
					{"currency":"USD","amount":"1000","workspace_id":"wrkspc_01","description":"Web Search","cost_type":"web_search","context_window":null,"model":null,"service_tier":null,"token_type":null}]},
					{"starting_at":"2026-11-30T00:00:00Z","ending_at":"2026-12-01T00:00:00Z","results":[]}],
					"has_more":false,"next_page":null}`,
			},
		},
		throttle: map[string]string{"/v1/organizations/cost_report": "Mon, 30 Nov 2026 12:00:30 GMT"},
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var waits []time.Duration
	a := &Anthropic{BaseURL: srv.URL, AdminKey: "sk-ant-admin-test", Client: Client{Now: func() time.Time { return noon30 }, Sleep: recordSleeps(&waits)}}
	rep, err := a.Fetch(context.Background(), twoDays)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := `2026-11-29|anthropic_messages|anthropic|claude-sonnet-4-20250514|wrkspc_01|apikey_01|standard|input_uncached||1500|0.000000000000
2026-11-29|anthropic_messages|anthropic|claude-sonnet-4-20250514|wrkspc_01|apikey_01|standard|input_cached||200|0.000000000000
2026-11-29|anthropic_messages|anthropic|claude-sonnet-4-20250514|wrkspc_01|apikey_01|standard|cache_write_5m||500|0.000000000000
2026-11-29|anthropic_messages|anthropic|claude-sonnet-4-20250514|wrkspc_01|apikey_01|standard|cache_write_1h||1000|0.000000000000
2026-11-29|anthropic_messages|anthropic|claude-sonnet-4-20250514|wrkspc_01|apikey_01|standard|output||500|0.000000000000
2026-11-30|anthropic_messages|anthropic|claude-haiku-4-5|||batch|input_uncached||9|0.000000000000
2026-11-30|anthropic_messages|anthropic|claude-haiku-4-5|||batch|output||1|0.000000000000
2026-11-29|anthropic_costs|anthropic|claude-sonnet-4-20250514|wrkspc_01||standard|input_uncached|Claude Sonnet 4 Usage - Input Tokens|0|1.234500000000
2026-11-29|anthropic_costs|anthropic|claude-sonnet-4-20250514|||standard|output|Claude Sonnet 4 Usage - Output Tokens|0|0.000000000000
2026-11-29|anthropic_costs|anthropic||wrkspc_01||||Web Search|0|10.000000000000
`
	if got := rowLines(rep.Rows); got != wantRows {
		t.Errorf("rows:\n%s\nwant:\n%s", got, wantRows)
	}
	wantPeriods := `anthropic_messages 2026-11-29 complete=true
anthropic_messages 2026-11-30 complete=false
anthropic_costs 2026-11-29 complete=true
anthropic_costs 2026-11-30 complete=false
`
	if got := periodLines(rep.Periods); got != wantPeriods {
		t.Errorf("periods:\n%s\nwant:\n%s", got, wantPeriods)
	}
	if fmt.Sprint(waits) != "[30s]" {
		t.Errorf("waits = %v, want [30s] (the Retry-After date of the 429, 30 s after now)", waits)
	}
	wantQueries := `/v1/organizations/usage_report/messages?bucket_width=1d&ending_at=2026-12-01T00%3A00%3A00Z&group_by%5B%5D=model&group_by%5B%5D=workspace_id&group_by%5B%5D=api_key_id&group_by%5B%5D=service_tier&limit=31&starting_at=2026-11-29T00%3A00%3A00Z
/v1/organizations/usage_report/messages?bucket_width=1d&ending_at=2026-12-01T00%3A00%3A00Z&group_by%5B%5D=model&group_by%5B%5D=workspace_id&group_by%5B%5D=api_key_id&group_by%5B%5D=service_tier&limit=31&page=page_2&starting_at=2026-11-29T00%3A00%3A00Z
/v1/organizations/cost_report?bucket_width=1d&ending_at=2026-12-01T00%3A00%3A00Z&group_by%5B%5D=workspace_id&group_by%5B%5D=description&limit=31&starting_at=2026-11-29T00%3A00%3A00Z
/v1/organizations/cost_report?bucket_width=1d&ending_at=2026-12-01T00%3A00%3A00Z&group_by%5B%5D=workspace_id&group_by%5B%5D=description&limit=31&starting_at=2026-11-29T00%3A00%3A00Z
`
	if got := strings.Join(f.queries, "\n") + "\n"; got != wantQueries {
		t.Errorf("requests:\n%s\nwant:\n%s", got, wantQueries)
	}
}

// TestFetchErrors: a refused key, a server that keeps answering 429, and a page that says
// has_more without a cursor fail the fetch; no error names the key.
func TestFetchErrors(t *testing.T) {
	f := &fakeReports{t: t, header: http.Header{"Authorization": {"Bearer right"}}, pages: map[string]map[string]string{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	noSleep := func(context.Context, time.Duration) error { return nil }
	o := &OpenAI{BaseURL: srv.URL, AdminKey: "sk-wrong-secret", Client: Client{Now: func() time.Time { return noon30 }, Sleep: noSleep}}
	_, err := o.Fetch(context.Background(), twoDays)
	want := "openai openai_completions: GET " + srv.URL + "/v1/organization/usage/completions: 401 Unauthorized: {\"error\":\"unauthorized\"}\n"
	if err == nil || err.Error() != want {
		t.Errorf("wrong key: error = %v, want %s", err, want)
	}

	always429 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer always429.Close()
	var waits []time.Duration
	a := &Anthropic{BaseURL: always429.URL, AdminKey: "sk-ant-secret", Client: Client{Sleep: recordSleeps(&waits), Retries: 2}}
	_, err = a.Fetch(context.Background(), twoDays)
	want = "anthropic anthropic_messages: GET " + always429.URL + "/v1/organizations/usage_report/messages: 429 Too Many Requests: "
	if err == nil || err.Error() != want || fmt.Sprint(waits) != "[1s 1s]" {
		t.Errorf("always 429: error = %v, waits %v; want %s after [1s 1s]", err, waits, want)
	}

	f.header = nil
	f.pages["/v1/organization/usage/completions"] = map[string]string{"": `{"object":"page","data":[],"has_more":true,"next_page":null}`}
	_, err = o.Fetch(context.Background(), twoDays)
	want = "openai openai_completions: page 1: has_more without a next_page"
	if err == nil || err.Error() != want {
		t.Errorf("has_more without cursor: error = %v, want %s", err, want)
	}
	for _, e := range []error{err} {
		if e != nil && (strings.Contains(e.Error(), "secret")) {
			t.Errorf("error %v names the key", e)
		}
	}
}
