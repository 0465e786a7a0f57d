package collect

import (
	"context"
	stdjson "encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// Outcome lines: three valid (one with its own id, one without time), four invalid.
var outcomeLines = []string{
	`{"workflow_id":"ticket-4711","outcome":"resolved","time":"2026-11-26T22:40:00.5Z"}`,
	`{"id":"out-2","workflow_id":"ticket-4712","outcome":"escalated","time":"2026-11-26T23:40:00+01:00"}`,
	`{"workflow_id":"ticket-4713","outcome":"Resolved!"}`,
	`{"workflow_id":"","outcome":"resolved"}`,
	`{"workflow_id":"ticket-4714","outcome":"abandoned"}`,
	`{"workflow_id":"ticket-4715","outcome":"resolved","time":"2026-11-27T00:00:00Z"}`,
	`{"workflow_id":7,"outcome":"resolved"}`,
}

var (
	wantOutcome0 = stream.Outcome{
		ID: stream.OutcomeID("ticket-4711", "resolved", time.Date(2026, 11, 26, 22, 40, 0, 500_000_000, time.UTC)), WorkflowID: "ticket-4711",
		Outcome: "resolved", Time: time.Date(2026, 11, 26, 22, 40, 0, 500_000_000, time.UTC), ReceivedAt: testNow,
	}
	wantOutcome1 = stream.Outcome{
		ID: "out-2", WorkflowID: "ticket-4712", Outcome: "escalated", Time: time.Date(2026, 11, 26, 22, 40, 0, 0, time.UTC), ReceivedAt: testNow,
	}
	wantOutcome4 = stream.Outcome{
		ID: stream.OutcomeID("ticket-4714", "abandoned", testNow), WorkflowID: "ticket-4714", Outcome: "abandoned", Time: testNow, ReceivedAt: testNow,
	}
	wantOutcomeRejected = []outcomeRejection{
		{Index: 2, WorkflowID: "ticket-4713", Error: `outcome: "Resolved!" must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'`},
		{Index: 3, Error: "workflow_id: is required"},
		{Index: 5, WorkflowID: "ticket-4715", Error: "time: 2026-11-27T00:00:00Z is more than 5m0s ahead of the collector's clock (2026-11-26T22:41:31.123Z)"},
		{Index: 6, Error: "not an outcome: json: cannot unmarshal number into Go struct field outcomeIn.workflow_id of type string"},
	}
)

func TestDecodeOutcomesFormats(t *testing.T) {
	lim := event.DefaultLimits
	want := outcomeBatch{Outcomes: []stream.Outcome{wantOutcome0, wantOutcome1, wantOutcome4}, Rejected: wantOutcomeRejected}
	for _, tc := range []struct{ name, contentType, body string }{
		{"NDJSON", "application/x-ndjson", strings.Join(outcomeLines, "\n") + "\n"},
		{"NDJSON with CRLF and no content type", "", strings.Join(outcomeLines, "\r\n")},
		{"JSON array", "application/json; charset=utf-8", "[" + strings.Join(outcomeLines, ",\n") + "]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeOutcomes([]byte(tc.body), tc.contentType, testNow, lim, 100)
			if err != nil {
				t.Fatalf("decodeOutcomes() error = %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decodeOutcomes() =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	// One object, pretty-printed.
	got, err := decodeOutcomes([]byte("{\n  \"workflow_id\": \"ticket-4711\",\n  \"outcome\": \"resolved\",\n  \"time\": \"2026-11-26T22:40:00.5Z\"\n}"), "application/json", testNow, lim, 100)
	if err != nil || !reflect.DeepEqual(got, outcomeBatch{Outcomes: []stream.Outcome{wantOutcome0}}) {
		t.Errorf("decodeOutcomes(one object) = %+v, %v", got, err)
	}
}

func TestDecodeOutcomesRejections(t *testing.T) {
	lim := event.DefaultLimits
	f := func(line, want string) {
		t.Helper()
		got, err := decodeOutcomes([]byte(line), "application/x-ndjson", testNow, lim, 10)
		if err != nil {
			t.Fatalf("decodeOutcomes(%s) error = %v", line, err)
		}
		if len(got.Outcomes) != 0 || len(got.Rejected) != 1 || got.Rejected[0].Error != want {
			t.Errorf("decodeOutcomes(%s) = %+v, want the rejection %q", line, got, want)
		}
	}
	f(`{"workflow_id":"w","outcome":""}`, "outcome: is required")
	f(`{"workflow_id":"w"}`, "outcome: is required")
	f(`{"workflow_id":"w","outcome":"`+strings.Repeat("a", 65)+`"}`,
		`outcome: "`+strings.Repeat("a", 64)+`…" must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'`)
	f(`{"workflow_id":"w","outcome":"re solved"}`, `outcome: "re solved" must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'`)
	f(`{"workflow_id":"w","outcome":"\u00e9t\u00e9"}`, `outcome: "été" must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'`)
	f(`{"workflow_id":"`+strings.Repeat("w", 257)+`","outcome":"ok"}`, "workflow_id: is 257 bytes long, more than the limit of 256")
	f(`{"workflow_id":"a\u0007b","outcome":"ok"}`, "workflow_id: contains a control character")
	f(`{"workflow_id":"a\u202eb","outcome":"ok"}`, "workflow_id: contains a bidirectional control character (U+202E)")
	f(`{"workflow_id":"w","id":"o\u200b1","outcome":"ok"}`, "id: contains a zero-width character (U+200B)")
	f(`{"workflow_id":"w","outcome":"ok","id":"`+strings.Repeat("i", 129)+`"}`, "id: is 129 bytes long, more than the limit of 128")
	f(`{"workflow_id":"w","outcome":"ok","time":"2026-10-01T00:00:00Z"}`,
		"time: 2026-10-01T00:00:00Z is more than 840h0m0s before the collector's clock (2026-11-26T22:41:31.123Z)")
	f(`{"workflow_id":"w","outcome":"ok","time":"yesterday"}`,
		`not an outcome: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`)
	f(`{"workflow_id":"w","outcome":["ok"]}`, "not an outcome: json: cannot unmarshal array into Go struct field outcomeIn.outcome of type string")
}

func TestDecodeOutcomesUnreadable(t *testing.T) {
	lim := event.DefaultLimits
	for _, tc := range []struct{ name, contentType, body, want string }{
		{"empty", "", " \n ", "body holds no readable outcomes: the body is empty"},
		{"garbage", "application/x-ndjson", "hello\nworld", "body holds no readable outcomes: no line is a JSON object (line 0: not a JSON outcome object: invalid character 'h' looking for beginning of value)"},
		{"broken array", "", `[{"workflow_id":"w"`, "body holds no readable outcomes: not a JSON array: unexpected end of JSON input"},
		{"empty array", "", "[]", "body holds no readable outcomes: the array is empty"},
		{"content type", "text/csv", "a,b", `body holds no readable outcomes: content type "text/csv" is not one of application/json, application/x-ndjson`},
		{"bad content type", "/", "{}", `body holds no readable outcomes: content type "/": mime: no media type`},
		{"too many lines", "", strings.Repeat("{}\n", 4), "too many outcomes in one body: 4 lines, the limit is 3"},
		{"too many elements", "", "[{},{},{},{}]", "too many outcomes in one body: 4 outcomes, the limit is 3"},
	} {
		got, err := decodeOutcomes([]byte(tc.body), tc.contentType, testNow, lim, 3)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: decodeOutcomes() = %+v, %v; want error %q", tc.name, got, err, tc.want)
		}
	}
}

func postOutcomes(tb testing.TB, h http.Handler, contentType, body string) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/outcomes", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func stdJSON(tb testing.TB, v any) string {
	tb.Helper()
	data, err := stdjson.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(data) + "\n"
}

// storedOutcomes reads every message of OUTCOMES.
func storedOutcomes(t *testing.T, js jetstream.JetStream) ([]stream.Outcome, []string) {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream.Outcomes)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var outs []stream.Outcome
	var ids []string
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if s := m.Header.Get(stream.HeaderSchema); s != stream.OutcomeSchema {
			t.Errorf("message %d schema = %q, want %q", seq, s, stream.OutcomeSchema)
		}
		got, err := stream.DecodeOutcomes(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		outs = append(outs, got...)
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return outs, ids
}

func TestOutcomesEndpoint(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{})
	body := strings.Join(outcomeLines, "\n")
	for i := range 2 { // the second send is a client retry: stored once
		rec := postOutcomes(t, c.Handler(), "application/x-ndjson", body)
		want := stdJSON(t, outcomesAccepted{Accepted: 3, Rejected: wantOutcomeRejected})
		if rec.Code != http.StatusAccepted || rec.Body.String() != want {
			t.Fatalf("send %d: %d %s, want 202 %s", i, rec.Code, rec.Body, want)
		}
	}
	outs, ids := storedOutcomes(t, js)
	if want := []stream.Outcome{wantOutcome0, wantOutcome1, wantOutcome4}; !reflect.DeepEqual(outs, want) {
		t.Errorf("stored outcomes =\n%+v\nwant\n%+v", outs, want)
	}
	if want := []string{stream.OutcomesMsgID([]stream.Outcome{wantOutcome0, wantOutcome1, wantOutcome4})}; !reflect.DeepEqual(ids, want) {
		t.Errorf("message ids = %v, want %v", ids, want)
	}
	if got := streamtest.Messages(t, js, stream.Raw); len(got) != 0 {
		t.Errorf("outcomes leaked %d messages into %s", len(got), stream.Raw)
	}
	for result, want := range map[string]float64{"accepted": 6, "rejected": 8, "refused": 0} {
		if got := outcomeMetric(t, c, "tokenmeter_collector_outcomes_total", "result", result); got != want {
			t.Errorf("outcomes_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := outcomeMetric(t, c, "tokenmeter_collector_outcome_requests_total", "code", "202"); got != 2 {
		t.Errorf("outcome_requests_total{code=202} = %v, want 2", got)
	}
	// Usage-event metrics are not touched by outcomes.
	if got := testutil.ToFloat64(c.metrics.accepted); got != 0 {
		t.Errorf("events accepted = %v, want 0", got)
	}
}

// outcomeMetric reads one labelled counter from the collector's registry.
func outcomeMetric(t *testing.T, c *Collector, name, label, value string) float64 {
	t.Helper()
	mfs, err := c.cfg.Gatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestOutcomesRefusals(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{MaxBodyBytes: 1000, MaxEvents: 2})
	f := func(name, body string, wantCode int, wantError string) {
		t.Helper()
		rec := postOutcomes(t, c.Handler(), "", body)
		if want := stdJSON(t, failure{Error: wantError}); rec.Code != wantCode || rec.Body.String() != want {
			t.Errorf("%s: %d %s, want %d %s", name, rec.Code, rec.Body, wantCode, want)
		}
	}
	f("empty", "", 400, "body holds no readable outcomes: the body is empty")
	f("over the size limit", strings.Repeat(" ", 1001), 413, "the body is 1001 bytes, more than the limit of 1000 bytes")
	f("too many", strings.Join(outcomeLines[:3], "\n"), 413, "too many outcomes in one body: 3 lines, the limit is 2")
	if got := outcomeMetric(t, c, "tokenmeter_collector_outcome_requests_total", "code", "413"); got != 2 {
		t.Errorf("outcome_requests_total{code=413} = %v, want 2", got)
	}
}

func TestOutcomesStreamFull(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, func(cfg *jetstream.StreamConfig) { cfg.MaxBytes = 100 })
	c := newCollector(t, nc, Config{})
	rec := postOutcomes(t, c.Handler(), "", outcomeLines[0])
	want := stdJSON(t, failure{Error: "none of the 1 valid outcomes is accepted, send the whole body again later: " +
		"publish 1 outcomes to OUTCOMES: JetStream cannot take more: the stream is full: 1 of 1 messages refused, first: " +
		"message 1 of 1: nats: API error: code=503 err_code=10077 description=maximum bytes exceeded"})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || rec.Body.String() != want {
		t.Errorf("%d (Retry-After %q) %s, want 429 (1) %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body, want)
	}
	if got := outcomeMetric(t, c, "tokenmeter_collector_outcomes_total", "result", "refused"); got != 1 {
		t.Errorf("outcomes_total{result=refused} = %v, want 1", got)
	}
}

func TestOutcomesNATSDown(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{PublishTimeout: 500 * time.Millisecond})
	s.Shutdown()
	testkit.Eventually(t, 5*time.Second, "the client sees the server gone", func() bool { return !nc.IsConnected() })
	rec := postOutcomes(t, c.Handler(), "", outcomeLines[0])
	want := stdJSON(t, failure{Error: "none of the 1 valid outcomes is accepted, send the whole body again later: " +
		"publish 1 outcomes to OUTCOMES: NATS is not connected (status RECONNECTING)"})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != retryAfterUnavailable || rec.Body.String() != want {
		t.Errorf("%d (Retry-After %q) %s, want 503 (%s) %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body, retryAfterUnavailable, want)
	}
}

// TestOutcomeMessagesSplit checks that a body larger than the server's max payload is
// published as several messages, each within the limit, in body order.
func TestOutcomeMessagesSplit(t *testing.T) {
	var outs []stream.Outcome
	for i := range 10 {
		outs = append(outs, stream.Outcome{ID: strings.Repeat("x", 100) + string(rune('a'+i)), WorkflowID: "w", Outcome: "ok", Time: testNow, ReceivedAt: testNow})
	}
	line, _ := stream.EncodeOutcomes(nil, outs[:1])
	msgs, err := outcomeMessages(outs, int64(3*len(line)))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 {
		t.Fatalf("%d messages, want 4 (3+3+3+1)", len(msgs))
	}
	var back []stream.Outcome
	for i, m := range msgs {
		if len(m.Data) > 3*len(line) {
			t.Errorf("message %d is %d bytes, over %d", i, len(m.Data), 3*len(line))
		}
		got, err := stream.DecodeOutcomes(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != stream.OutcomesMsgID(got) {
			t.Errorf("message %d id = %q, want the id of its outcomes", i, id)
		}
		back = append(back, got...)
	}
	if !reflect.DeepEqual(back, outs) {
		t.Errorf("outcomes across the messages differ from the body's")
	}
}

func FuzzDecodeOutcomes(f *testing.F) {
	for _, l := range outcomeLines {
		f.Add([]byte(l), "application/x-ndjson")
	}
	f.Add([]byte("["+strings.Join(outcomeLines, ",")+"]"), "application/json")
	f.Add([]byte(`{"workflow_id":"\ud800","outcome":"ok","id":"\u0000"}`), "")
	f.Add([]byte(`{"\`), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		b, err := decodeOutcomes(body, contentType, testNow, event.DefaultLimits, 100)
		if err != nil {
			if len(b.Outcomes)+len(b.Rejected) != 0 {
				t.Fatalf("an unreadable body returned outcomes: %+v", b)
			}
			return
		}
		if len(b.Outcomes)+len(b.Rejected) == 0 {
			t.Fatal("a readable body returned neither outcomes nor rejections")
		}
		for _, o := range b.Outcomes {
			in := outcomeIn{ID: o.ID, WorkflowID: o.WorkflowID, Outcome: o.Outcome, Time: o.Time}
			if _, err := in.validate(testNow, event.DefaultLimits); err != nil {
				t.Fatalf("an accepted outcome does not validate again: %+v: %v", o, err)
			}
			if o.ID == "" || o.Time.Location() != time.UTC || o.Time.Nanosecond()%int(time.Millisecond) != 0 {
				t.Fatalf("an accepted outcome is not normalized: %+v", o)
			}
		}
		if _, err := stdjson.Marshal(outcomesAccepted{Accepted: len(b.Outcomes), Rejected: b.Rejected}); err != nil {
			t.Fatalf("the answer cannot be encoded: %v", err)
		}
	})
}
