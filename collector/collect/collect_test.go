package collect

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// testNow is the collector's clock in tests, so that payloads and message ids are
// reproducible.
var testNow = time.Date(2026, 11, 26, 22, 41, 31, 123_000_000, time.UTC)

// The lines of a mixed batch: three valid events on partitions 0, 2 and 2, and three
// invalid ones.
var mixedLines = []string{
	`{"id":"evt-1","time":"2026-11-26T22:40:00.5Z","provider":"openai","model":"gpt-4o","operation":"chat","usage":{"input_tokens":1200,"output_tokens":300,"cached_input_tokens":1000},"tags":{"team":"search","env":"prod","region":"eu"}}`,
	`{"id":"evt-2","provider":"openai","usage":{"input_tokens":1,"output_tokens":1}}`,
	`{"id":"evt-3","provider":"anthropic","model":"claude-sonnet-4","usage":{"input_tokens":10,"output_tokens":5},"service_tier":"batch","latency_ms":850,"cache_hit":true,"workflow_id":"ticket-4711"}`,
	`{"id":"evt-4","provider":"openai","model":"gpt-4o","usage":{"input_tokens":"many"}}`,
	`{"id":"evt-5","provider":"openai","model":"gpt-4o","usage":{"input_tokens":5,"output_tokens":0,"cached_input_tokens":10}}`,
	`{"id":"evt-6","provider":"google","model":"gemini-2.5-pro","usage":{"input_tokens":7,"output_tokens":9,"reasoning_tokens":4}}`,
}

// wantEvents are the valid events of the fixtures as the collector must normalize them.
var wantEvents = map[string]event.Usage{
	"evt-1": {
		ID: "evt-1", Time: time.Date(2026, 11, 26, 22, 40, 0, 500_000_000, time.UTC), Provider: "openai", Model: "gpt-4o",
		Operation: "chat", Usage: event.Tokens{Input: 1200, Output: 300, CachedInput: 1000},
		ServiceTier: "standard", Status: "ok", Tags: map[string]string{"team": "search", "env": "prod", "region": "eu"},
	},
	"evt-3": {
		ID: "evt-3", Time: testNow, Provider: "anthropic", Model: "claude-sonnet-4", Usage: event.Tokens{Input: 10, Output: 5},
		ServiceTier: "batch", Status: "ok", LatencyMS: 850, CacheHit: true, WorkflowID: "ticket-4711",
	},
	"evt-6": {
		ID: "evt-6", Time: testNow, Provider: "google", Model: "gemini-2.5-pro", Usage: event.Tokens{Input: 7, Output: 9, Reasoning: 4},
		ServiceTier: "standard", Status: "ok",
	},
	"ce-7": {
		ID: "ce-7", Time: time.Date(2026, 11, 26, 22, 41, 0, 0, time.UTC), Provider: "openai", Model: "gpt-4o-mini",
		Usage: event.Tokens{Input: 3, Output: 4}, ServiceTier: "standard", Status: "ok",
	},
}

const malformedTokens = `not a usage event: json: cannot unmarshal number " into Go struct field Tokens.Input of type int64`

var mixedRejected = []event.Rejection{
	{Index: 1, ID: "evt-2", Error: "model: is required"},
	{Index: 3, ID: "evt-4", Error: malformedTokens},
	{Index: 4, ID: "evt-5", Error: "usage: cached_input_tokens (10) + cache_write_tokens (0) exceed input_tokens (5), which includes them"},
}

func cloudEvent(id, typ, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","type":%q,"source":"/svc/search","id":%q,"time":"2026-11-26T22:41:00Z","data":%s}`, typ, id, data)
}

func TestIngestFormats(t *testing.T) {
	ceBatch := "[" + strings.Join([]string{
		cloudEvent("ce-1", event.CloudEventType, mixedLines[0]),
		cloudEvent("ce-x", "com.example.other", mixedLines[2]),
		cloudEvent("ce-7", event.CloudEventType, `{"provider":"openai","model":"gpt-4o-mini","usage":{"input_tokens":3,"output_tokens":4}}`),
		cloudEvent("ce-4", event.CloudEventType, mixedLines[3]),
	}, ",") + "]"
	for _, tc := range []struct {
		name, contentType, body string
		want                    accepted
		wantIDs                 []string // the stored events, in body order
	}{
		{
			name: "JSON array", contentType: "application/json",
			body: "[" + strings.Join(mixedLines, ",\n") + "]",
			want: accepted{Accepted: 3, Rejected: mixedRejected}, wantIDs: []string{"evt-1", "evt-3", "evt-6"},
		},
		{
			name: "NDJSON", contentType: "application/x-ndjson",
			body: strings.Join(mixedLines, "\n") + "\n",
			want: accepted{Accepted: 3, Rejected: mixedRejected}, wantIDs: []string{"evt-1", "evt-3", "evt-6"},
		},
		{
			name: "NDJSON without content type", contentType: "",
			body: strings.Join(mixedLines, "\r\n"),
			want: accepted{Accepted: 3, Rejected: mixedRejected}, wantIDs: []string{"evt-1", "evt-3", "evt-6"},
		},
		{
			name: "CloudEvent", contentType: "application/cloudevents+json; charset=utf-8",
			body: cloudEvent("ce-1", event.CloudEventType, mixedLines[0]),
			want: accepted{Accepted: 1, Rejected: []event.Rejection{}}, wantIDs: []string{"evt-1"},
		},
		{
			name: "invalid CloudEvent", contentType: "application/cloudevents+json",
			body: cloudEvent("ce-2", event.CloudEventType, mixedLines[1]),
			want: accepted{Accepted: 0, Rejected: []event.Rejection{{Index: 0, ID: "evt-2", Error: "model: is required"}}},
		},
		{
			name: "CloudEvents batch", contentType: "application/cloudevents-batch+json",
			body: ceBatch,
			want: accepted{Accepted: 2, Rejected: []event.Rejection{
				{Index: 1, ID: "ce-x", Error: `type: "com.example.other" is not ai.usage.v1`},
				{Index: 3, ID: "evt-4", Error: `data: not a usage event: json: cannot unmarshal number " into Go struct field Tokens.Input of type int64`},
			}},
			wantIDs: []string{"evt-1", "ce-7"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := natstest.Start(t, t.TempDir(), -1)
			nc := natstest.Connect(t, s)
			js := streamtest.Streams(t, nc, nil)
			reg := prometheus.NewRegistry()
			c := newCollector(t, nc, Config{Registerer: reg})

			rec := post(t, c.Handler(), tc.contentType, tc.body)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d, want 202; body %s", rec.Code, rec.Body)
			}
			var got accepted
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("decode the answer %q: %v", rec.Body, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("answer = %+v, want %+v", got, tc.want)
			}
			if got := testutil.ToFloat64(c.metrics.accepted); got != float64(tc.want.Accepted) {
				t.Errorf("accepted metric = %v, want %d", got, tc.want.Accepted)
			}

			want := wantMessages(t, tc.wantIDs)
			got2 := streamtest.Messages(t, js, stream.Raw)
			if !reflect.DeepEqual(got2, want) {
				t.Errorf("stored messages:\n got  %+v\n want %+v", got2, want)
			}
		})
	}
}

// wantMessages builds the messages the collector must store for the given valid events: one
// per partition touched, in partition order, the rows in body order.
func wantMessages(tb testing.TB, ids []string) []streamtest.Msg {
	tb.Helper()
	rows := make([][]batch.Row, stream.DefaultPartitions)
	for _, id := range ids {
		u, ok := wantEvents[id]
		if !ok {
			tb.Fatalf("no expected event %q", id)
		}
		p := stream.Partition(id, stream.DefaultPartitions)
		rows[p] = append(rows[p], batch.FromUsage(&u, testNow, p))
	}
	var out []streamtest.Msg
	for p, rs := range rows {
		if len(rs) == 0 {
			continue
		}
		data, err := batch.AppendCompressed(nil, rs)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, streamtest.Msg{
			Subject: stream.RawSubject(p),
			Header:  nats.Header{stream.HeaderSchema: {batch.SchemaName}, jetstream.MsgIDHeader: {rawbatch.MsgID(data)}},
			Rows:    rs,
		})
	}
	return out
}

func TestIngestRejectedMetric(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{})
	post(t, c.Handler(), "application/x-ndjson", strings.Join(mixedLines, "\n"))
	for reason, want := range map[string]float64{"model": 1, "malformed": 1, "usage": 1, "tags": 0} {
		if got := testutil.ToFloat64(c.metrics.rejected.WithLabelValues(reason)); got != want {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

func TestIngestRefusals(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{MaxBodyBytes: 1000, MaxEvents: 2})
	f := func(name, contentType string, body io.Reader, wantCode int, wantError string) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/v1/events", body)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, req)
		if rec.Code != wantCode {
			t.Errorf("%s: status = %d, want %d", name, rec.Code, wantCode)
		}
		if got, want := rec.Body.String(), mustJSON(t, failure{Error: wantError}); got != want {
			t.Errorf("%s: body = %s, want %s", name, got, want)
		}
	}
	f("empty", "", strings.NewReader(""), 400, "body holds no readable events: the body is empty")
	f("not JSON", "application/x-ndjson", strings.NewReader("hello\nworld"), 400,
		`body holds no readable events: no line is a JSON object (line 0: not a JSON event object: invalid character 'h' looking for beginning of value)`)
	f("content type", "text/csv", strings.NewReader("a,b"), 400,
		`body holds no readable events: content type "text/csv" is not one of application/json, application/x-ndjson, application/cloudevents+json, application/cloudevents-batch+json`)
	f("body over the limit", "", strings.NewReader(strings.Repeat(" ", 1001)), 413,
		"the body is 1001 bytes, more than the limit of 1000 bytes")
	// Without a Content-Length the limit is found while reading.
	f("chunked body over the limit", "", io.MultiReader(strings.NewReader(strings.Repeat(" ", 1001))), 413,
		"the body is more than the limit of 1000 bytes")
	f("too many events", "application/x-ndjson", strings.NewReader(strings.Join(mixedLines[:3], "\n")), 413,
		"too many events in one body: 3 lines, the limit is 2")
	if got := streamtest.Messages(t, js, stream.Raw); len(got) != 0 {
		t.Errorf("refused bodies stored %d messages", len(got))
	}
}

func TestIngestStreamFull(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, func(cfg *jetstream.StreamConfig) { cfg.MaxBytes = 100 })
	c := newCollector(t, nc, Config{})
	for i := range breakerFailures + 1 {
		// A full stream must not open the breaker: every attempt gets the same answer.
		rec := post(t, c.Handler(), "application/x-ndjson", mixedLines[0])
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
			t.Fatalf("attempt %d: status = %d, Retry-After %q; want 429, 1; body %s", i, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		want := mustJSON(t, failure{Error: "none of the 1 valid events is accepted, send the whole body again later: " +
			"JetStream cannot take more: the stream is full: 1 of 1 messages refused, first: " +
			"publish 1 events to usage.raw.0: nats: API error: code=503 err_code=10077 description=maximum bytes exceeded"})
		if got := rec.Body.String(); got != want {
			t.Fatalf("attempt %d: body = %s, want %s", i, got, want)
		}
	}
	if got := testutil.ToFloat64(c.metrics.refused.WithLabelValues("full")); got != breakerFailures+1 {
		t.Errorf("refused{reason=full} = %v, want %d", got, breakerFailures+1)
	}
	if err := c.Ready(); err != nil {
		t.Errorf("Ready() = %v, want nil: a full stream is not an outage", err)
	}
}

func TestIngestNATSDown(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{PublishTimeout: 500 * time.Millisecond})
	if rec := post(t, c.Handler(), "", mixedLines[0]); rec.Code != http.StatusAccepted {
		t.Fatalf("before the outage: status = %d, want 202; body %s", rec.Code, rec.Body)
	}
	s.Shutdown()
	testkit.Eventually(t, 5*time.Second, "the client sees the server gone", func() bool { return !nc.IsConnected() })

	for i := range breakerFailures {
		rec := post(t, c.Handler(), "", mixedLines[0])
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != retryAfterUnavailable {
			t.Fatalf("attempt %d: status = %d, Retry-After %q; want 503, %s; body %s", i, rec.Code, rec.Header().Get("Retry-After"), retryAfterUnavailable, rec.Body)
		}
		want := mustJSON(t, failure{Error: "none of the 1 valid events is accepted, send the whole body again later: NATS is not connected (status RECONNECTING)"})
		if got := rec.Body.String(); got != want {
			t.Fatalf("attempt %d: body = %s, want %s", i, got, want)
		}
	}
	rec := post(t, c.Handler(), "", mixedLines[0])
	want := mustJSON(t, failure{Error: "none of the 1 valid events is accepted, send the whole body again later: " +
		"publishing to NATS failed repeatedly, the circuit breaker is open: circuit breaker is open"})
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != want {
		t.Errorf("breaker open: status = %d, body %s; want 503, %s", rec.Code, rec.Body, want)
	}
	if got := testutil.ToFloat64(c.metrics.breakerOpen); got != 1 {
		t.Errorf("breaker_open = %v, want 1", got)
	}

	ready := httptest.NewRecorder()
	c.OpsHandler().ServeHTTP(ready, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	wantReady := "NATS is not connected (status RECONNECTING)\nthe NATS publish circuit breaker is open\n"
	if ready.Code != http.StatusServiceUnavailable || ready.Body.String() != wantReady {
		t.Errorf("/readyz: %d %q, want 503 %q", ready.Code, ready.Body, wantReady)
	}
}

// TestIngestRetryStoredOnce sends the same body twice with the same receive time: the second
// publish carries the same message ids, and JetStream stores each message once.
func TestIngestRetryStoredOnce(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{})
	body := strings.Join(mixedLines, "\n")
	for i := range 2 {
		if rec := post(t, c.Handler(), "", body); rec.Code != http.StatusAccepted {
			t.Fatalf("send %d: status = %d, want 202; body %s", i, rec.Code, rec.Body)
		}
	}
	want := wantMessages(t, []string{"evt-1", "evt-3", "evt-6"})
	if got := streamtest.Messages(t, js, stream.Raw); !reflect.DeepEqual(got, want) {
		t.Errorf("stored messages:\n got  %+v\n want %+v", got, want)
	}
}

func TestRun(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	c := newCollector(t, nc, Config{Addr: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	testkit.Eventually(t, 5*time.Second, "the collector listens", func() bool { return c.Addr() != "" })
	base := "http://" + c.Addr()

	resp, err := http.Post(base+"/v1/events", "application/x-ndjson", strings.NewReader(strings.Join(mixedLines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := mustJSON(t, accepted{Accepted: 3, Rejected: mixedRejected}); resp.StatusCode != 202 || string(body) != want {
		t.Errorf("POST /v1/events: %d %s, want 202 %s", resp.StatusCode, body, want)
	}
	opsSrv := httptest.NewServer(c.OpsHandler())
	defer opsSrv.Close()
	for path, want := range map[string]string{
		"/healthz": "ok\n",
		"/readyz":  "ready\n",
		"/metrics": "tokenmeter_collector_events_accepted_total 3\n",
	} {
		resp, err := http.Get(opsSrv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s on the ops address: %d %q, want 200 containing %q", path, resp.StatusCode, body, want)
		}
		// The public address does not say how the collector is doing.
		if resp, err = http.Get(base + path); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the public address: %d, want 404", path, resp.StatusCode)
		}
	}

	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10s after its context ended")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v, want nil (all defaults)", err)
	}
	err := Config{
		Partitions: -1, MaxBodyBytes: -5, MaxEvents: -2, PublishTimeout: -time.Second,
		Limits: event.Limits{MaxFuture: time.Minute},
	}.Validate()
	want := strings.Join([]string{
		"-partitions (-1) must be within [1, 1024]",
		"-max-body-bytes (-5) must be positive",
		"-max-events (-2) must be positive",
		"-publish-timeout (-1s) must be positive",
		"limits.max_age (0) must be positive",
		"limits.max_tokens (0) must be positive",
		"limits.max_tags (0) must be positive",
		"limits.max_tag_key (0) must be positive",
		"limits.max_tag_value (0) must be positive",
		"limits.max_id (0) must be positive",
		"limits.max_string (0) must be positive",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
	if _, err := New(Config{}, nil); err == nil || err.Error() != "new collector: the NATS connection is nil" {
		t.Errorf("New with a nil connection: %v", err)
	}
}

func TestReasonClass(t *testing.T) {
	f := func(msg, want string) {
		t.Helper()
		if got := reasonClass(msg); got != want {
			t.Errorf("reasonClass(%q) = %q, want %q", msg, got, want)
		}
	}
	f(malformedTokens, "malformed")
	f("not a CloudEvent object: json: …", "malformed")
	f(`type: "x" is not ai.usage.v1`, "cloudevent")
	f("data: must be a JSON object holding the usage event", "cloudevent")
	f("tags.secret-key-of-a-client: contains a control character", "tags")
	f("usage.input_tokens: -1 is negative", "usage")
	f("time: 2030-01-01T00:00:00Z is more than 5m0s ahead", "time")
	f("id: is required", "id")
	f("something new", "other")
	f("novel_field: bad", "other")
}

func newCollector(tb testing.TB, nc *nats.Conn, cfg Config) *Collector {
	tb.Helper()
	c, err := New(cfg, nc)
	if err != nil {
		tb.Fatalf("new collector: %v", err)
	}
	c.now = func() time.Time { return testNow }
	return c
}

func post(tb testing.TB, h http.Handler, contentType, body string) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(data) + "\n"
}
