package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// The test registry: sk-search may charge team search only, and always cc-42 / alice;
// sk-platform may charge platform (its default), search or support.
const (
	keySearch   = "sk-search"
	keyPlatform = "sk-platform"
	testKeys    = `{"keys":[
  {"sha256":"b095adcc724f4f8a1b85094a159f0164bfe8a34524859411dbf0514747a71c06","name":"search-prod",
   "tags":{"team":"search","cost_center":"cc-42","owner":"alice"}},
  {"sha256":"80f54c3075a73e133d485ed01ef5143107023e9c60932bdc5092a817f4aa548e","name":"platform-batch",
   "tags":{"team":"platform","traffic":"background"},"teams":["platform","search","support"]}
]}`
)

// writeFile writes a test file under dir and returns its path.
func writeFile(tb testing.TB, dir, name, data string) string {
	tb.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// send posts body to path with the given headers (name, value pairs).
func send(tb testing.TB, h http.Handler, path, contentType, body string, header ...string) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// storedTags returns the tags of every event stored in USAGE_RAW, by event id.
func storedTags(tb testing.TB, js jetstream.JetStream) map[string]map[string]string {
	tb.Helper()
	out := map[string]map[string]string{}
	for _, m := range streamtest.Messages(tb, js, stream.Raw) {
		for _, r := range m.Rows {
			tags := map[string]string{}
			for k, v := range map[string]string{"team": r.Team, "feature": r.Feature, "env": r.Env, "cost_center": r.CostCenter, "traffic": r.Traffic} {
				if v != "" {
					tags[k] = v
				}
			}
			for _, t := range r.ExtraTags {
				tags[t.Key] = t.Value
			}
			out[r.ID] = tags
		}
	}
	return out
}

// storedSources is the batch.Row.Source of every event in USAGE_RAW, by id.
func storedSources(tb testing.TB, js jetstream.JetStream) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, m := range streamtest.Messages(tb, js, stream.Raw) {
		for _, r := range m.Rows {
			out[r.ID] = r.Source
		}
	}
	return out
}

// started is a collector with the given config on embedded JetStream.
func started(t *testing.T, cfg Config) (*Collector, jetstream.JetStream) {
	t.Helper()
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	return newCollector(t, nc, cfg), js
}

func TestAuthRefusals(t *testing.T) {
	c, js := started(t, Config{KeysFile: writeFile(t, t.TempDir(), "keys.json", testKeys)})
	missing := mustJSON(t, failure{Error: "missing API key: this collector requires the header Authorization: Bearer KEY or X-Tokenmeter-Key: KEY"})
	unknown := mustJSON(t, failure{Error: "unknown API key: it is not in the collector's keys file"})
	f := func(path, contentType string, wantCode int, wantBody string, header ...string) {
		t.Helper()
		rec := send(t, c.Handler(), path, contentType, mixedLines[0], header...)
		if rec.Code != wantCode || rec.Body.String() != wantBody || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %v: %d %s, want %d %s", path, header, rec.Code, rec.Body, wantCode, wantBody)
		}
		if wantCode == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != `Bearer realm="tokenmeter"` {
			t.Errorf("%s %v: WWW-Authenticate = %q", path, header, rec.Header().Get("WWW-Authenticate"))
		}
	}
	for _, path := range []string{"/v1/events", "/v1/traces", "/v1/outcomes"} {
		f(path, "application/json", 401, missing)
		f(path, "application/json", 401, missing, "Authorization", "Basic "+keySearch)
		f(path, "application/json", 401, missing, "Authorization", "Bearer  ", HeaderKey, " ")
		f(path, "application/json", 403, unknown, "Authorization", "Bearer sk-nope")
		f(path, "application/json", 403, unknown, HeaderKey, keySearch+"x")
	}
	if got := streamtest.Messages(t, js, stream.Raw); len(got) != 0 {
		t.Errorf("refused requests stored %d messages", len(got))
	}
	for reason, want := range map[string]float64{"missing": 9, "unknown": 6} {
		if got := testutil.ToFloat64(c.attr.authFailures.WithLabelValues(reason)); got != want {
			t.Errorf("auth_failures{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	// Health and metrics stay open.
	rec := httptest.NewRecorder()
	c.OpsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/healthz: %d", rec.Code)
	}
}

func TestAuthBindsTags(t *testing.T) {
	c, js := started(t, Config{KeysFile: writeFile(t, t.TempDir(), "keys.json", testKeys)})
	body := strings.Join([]string{
		`{"id":"k-1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1}}`,
		`{"id":"k-2","provider":"openai","usage":{"input_tokens":1,"output_tokens":1}}`,
		`{"id":"k-3","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"team":"payments"}}`,
		`{"id":"k-4","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"team":"Search","cost_center":"cc-99","feature":"chat"}}`,
	}, "\n")
	rec := send(t, c.Handler(), "/v1/events", event.ContentNDJSON, body, "Authorization", "Bearer "+keySearch)
	want := mustJSON(t, accepted{Accepted: 2, Rejected: []event.Rejection{
		{Index: 1, ID: "k-2", Error: "model: is required"},
		{Index: 2, ID: "k-3", Error: `tags.team: the API key "search-prod" may not charge team "payments" (it may charge search)`},
	}})
	if rec.Code != http.StatusAccepted || rec.Body.String() != want {
		t.Fatalf("search key: %d %s, want 202 %s", rec.Code, rec.Body, want)
	}
	body = strings.Join([]string{
		`{"id":"k-5","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"team":"support","traffic":"user"}}`,
		`{"id":"k-6","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1}}`,
		`{"id":"k-7","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"team":"payments"}}`,
	}, "\n")
	rec = send(t, c.Handler(), "/v1/events", event.ContentNDJSON, body, HeaderKey, keyPlatform)
	want = mustJSON(t, accepted{Accepted: 2, Rejected: []event.Rejection{
		{Index: 2, ID: "k-7", Error: `tags.team: the API key "platform-batch" may not charge team "payments" (it may charge platform, search, support)`},
	}})
	if rec.Code != http.StatusAccepted || rec.Body.String() != want {
		t.Fatalf("platform key: %d %s, want 202 %s", rec.Code, rec.Body, want)
	}
	wantTags := map[string]map[string]string{
		"k-1": {"team": "search", "cost_center": "cc-42", "owner": "alice"},
		"k-4": {"team": "search", "cost_center": "cc-42", "owner": "alice", "feature": "chat"},
		"k-5": {"team": "support", "traffic": "background"},
		"k-6": {"team": "platform", "traffic": "background"},
	}
	if got := storedTags(t, js); !reflect.DeepEqual(got, wantTags) {
		t.Errorf("stored tags =\n%v\nwant\n%v", got, wantTags)
	}
	// The key that authenticated a report is its source, which ranks it above an anonymous one.
	wantSources := map[string]string{"k-1": "key:search-prod", "k-4": "key:search-prod", "k-5": "key:platform-batch", "k-6": "key:platform-batch"}
	if got := storedSources(t, js); !reflect.DeepEqual(got, wantSources) {
		t.Errorf("stored sources = %v, want %v", got, wantSources)
	}
	if got := testutil.ToFloat64(c.attr.rejected.WithLabelValues("api_key")); got != 2 {
		t.Errorf("attribution_rejected{api_key} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.metrics.rejected.WithLabelValues("tags")); got != 2 {
		t.Errorf("rejected{tags} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.metrics.accepted); got != 4 {
		t.Errorf("accepted = %v, want 4", got)
	}
}

func TestTagPolicyEvents(t *testing.T) {
	c, js := started(t, Config{TagPolicyFile: writeFile(t, t.TempDir(), "policy.yaml", testPolicy)})
	body := strings.Join([]string{
		`{"id":"p-1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"env":"prod","team":"search"}}`,
		`{"id":"p-2","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"env":"qa","feature":"chat"}}`,
		`{"id":"p-3","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"env":"dev"}}`,
		`{"id":"p-4","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{"env":"prod","team":"search","feature":"rag"}}`,
		`{"id":"p-5","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1}}`,
	}, "\n")
	// No keys file: no key is needed, and one sent is ignored.
	rec := send(t, c.Handler(), "/v1/events", event.ContentNDJSON, body, "Authorization", "Bearer whatever")
	want := mustJSON(t, accepted{Accepted: 4, Rejected: []event.Rejection{
		{Index: 0, ID: "p-1", Error: `tags: missing feature (the tag policy requires team, feature in env "prod")`},
	}})
	if rec.Code != http.StatusAccepted || rec.Body.String() != want {
		t.Fatalf("%d %s, want 202 %s", rec.Code, rec.Body, want)
	}
	wantTags := map[string]map[string]string{
		"p-2": {"env": "qa", "feature": "chat", "team": "unallocated"},
		"p-3": {"env": "dev"},
		"p-4": {"env": "prod", "team": "search", "feature": "rag"},
		"p-5": {"team": "unallocated"},
	}
	if got := storedTags(t, js); !reflect.DeepEqual(got, wantTags) {
		t.Errorf("stored tags =\n%v\nwant\n%v", got, wantTags)
	}
	// Without a keys file every report is anonymous, whatever key it carries.
	if got, want := storedSources(t, js), map[string]string{"p-2": "", "p-3": "", "p-4": "", "p-5": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("stored sources = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(c.attr.unallocated.WithLabelValues("default", "team")); got != 2 {
		t.Errorf("tags_unallocated{default, team} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.attr.rejected.WithLabelValues("tag_policy")); got != 1 {
		t.Errorf("attribution_rejected{tag_policy} = %v, want 1", got)
	}
}

// A key's bound tags count towards the required ones, and towards the limit on tags.
func TestAuthWithTagPolicy(t *testing.T) {
	dir := t.TempDir()
	c, js := started(t, Config{
		KeysFile:      writeFile(t, dir, "keys.json", testKeys),
		TagPolicyFile: writeFile(t, dir, "policy.yaml", "default: {required: [team, cost_center], policy: reject}"),
	})
	var many []string
	for i := range 31 {
		many = append(many, fmt.Sprintf(`"t%d":"v"`, i))
	}
	body := strings.Join([]string{
		`{"id":"a-1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1}}`,
		`{"id":"a-2","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":1},"tags":{` + strings.Join(many, ",") + `}}`,
	}, "\n")
	rec := send(t, c.Handler(), "/v1/events", event.ContentNDJSON, body, HeaderKey, keySearch)
	want := mustJSON(t, accepted{Accepted: 1, Rejected: []event.Rejection{
		{Index: 1, ID: "a-2", Error: "tags: 34 tags with those the API key and the tag policy set, more than the limit of 32"},
	}})
	if rec.Code != http.StatusAccepted || rec.Body.String() != want {
		t.Fatalf("search key: %d %s, want 202 %s", rec.Code, rec.Body, want)
	}
	rec = send(t, c.Handler(), "/v1/events", event.ContentNDJSON, body, HeaderKey, keyPlatform)
	want = mustJSON(t, accepted{Accepted: 0, Rejected: []event.Rejection{
		{Index: 0, ID: "a-1", Error: "tags: missing cost_center (the tag policy requires team, cost_center by default)"},
		{Index: 1, ID: "a-2", Error: "tags: missing cost_center (the tag policy requires team, cost_center by default)"},
	}})
	if rec.Code != http.StatusAccepted || rec.Body.String() != want {
		t.Fatalf("platform key: %d %s, want 202 %s", rec.Code, rec.Body, want)
	}
	if got, want := storedTags(t, js), map[string]map[string]string{"a-1": {"team": "search", "cost_center": "cc-42", "owner": "alice"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("stored tags = %v, want %v", got, want)
	}
}

// otlpSpan is an OTLP/JSON export of one GenAI usage span ending at testNow.
func otlpSpan(team string) string {
	return fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"bot"}},
{"key":"tokenmeter.team","value":{"stringValue":%q}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
"spanId":"eee19b7ec3c1b174","name":"chat","startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[
{"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.response.model","value":{"stringValue":"gpt-4o"}},
{"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}},{"key":"gen_ai.usage.output_tokens","value":{"intValue":"3"}}]}]}]}]}`,
		team, testNow.Add(-time.Second).UnixNano(), testNow.UnixNano())
}

// compactJSON drops the whitespace protojson adds at random (on purpose, so that nobody
// compares its output byte for byte).
func compactJSON(t testing.TB, data []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		t.Fatalf("compact %s: %v", data, err)
	}
	return b.String()
}

func TestAuthTracesAndOutcomes(t *testing.T) {
	dir := t.TempDir()
	c, js := started(t, Config{
		KeysFile:      writeFile(t, dir, "keys.json", testKeys),
		TagPolicyFile: writeFile(t, dir, "policy.yaml", "default: {required: [team, feature], policy: unallocated}"),
	})
	rec := send(t, c.Handler(), "/v1/traces", "application/json", otlpSpan("payments"), HeaderKey, keySearch)
	if want := `{"partialSuccess":{"rejectedSpans":"1","errorMessage":"span otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174: tags.team: the API key \"search-prod\" may not charge team \"payments\" (it may charge search)"}}`; rec.Code != http.StatusOK || compactJSON(t, rec.Body.Bytes()) != want {
		t.Errorf("traces, forbidden team: %d %s, want 200 %s", rec.Code, rec.Body, want)
	}
	rec = send(t, c.Handler(), "/v1/traces", "application/json", otlpSpan("search"), HeaderKey, keySearch)
	if rec.Code != http.StatusOK || compactJSON(t, rec.Body.Bytes()) != `{}` {
		t.Errorf("traces: %d %s, want 200 {}", rec.Code, rec.Body)
	}
	want := map[string]map[string]string{"otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174": {
		"team": "search", "cost_center": "cc-42", "owner": "alice", "service": "bot", "feature": "unallocated",
	}}
	if got := storedTags(t, js); !reflect.DeepEqual(got, want) {
		t.Errorf("stored tags = %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(c.attr.unallocated.WithLabelValues("default", "feature")); got != 1 {
		t.Errorf("tags_unallocated{default, feature} = %v, want 1", got)
	}
	rec = send(t, c.Handler(), "/v1/outcomes", "application/json", `{"workflow_id":"w-1","outcome":"resolved"}`, "Authorization", "Bearer "+keyPlatform)
	if rec.Code != http.StatusAccepted || rec.Body.String() != "{\"accepted\":1,\"rejected\":[]}\n" {
		t.Errorf("outcomes: %d %s, want 202", rec.Code, rec.Body)
	}
}

// Accept, called with no key in its context (another intake of the process), applies the
// policy alone and leaves its input alone.
func TestAcceptWithPolicy(t *testing.T) {
	c, js := started(t, Config{TagPolicyFile: writeFile(t, t.TempDir(), "policy.yaml", "")})
	in := []event.Usage{{ID: "x-1", Provider: "openai", Model: "gpt-4o", Usage: event.Tokens{Input: 1}, Tags: map[string]string{"env": "prod"}}}
	rejected, err := c.Accept(context.Background(), in)
	if err != nil || len(rejected) != 0 {
		t.Fatalf("Accept: %v, %v", rejected, err)
	}
	if !reflect.DeepEqual(in[0].Tags, map[string]string{"env": "prod"}) {
		t.Errorf("Accept modified its input: %v", in[0].Tags)
	}
	if got, want := storedTags(t, js), map[string]map[string]string{"x-1": {"env": "prod", "team": "unallocated"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("stored tags = %v, want %v", got, want)
	}
}

func TestKeysReload(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "keys.json", testKeys)
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{KeysFile: path})
	status := func(key string) int {
		t.Helper()
		return send(t, c.Handler(), "/v1/events", event.ContentNDJSON, mixedLines[0], HeaderKey, key).Code
	}
	if status(keySearch) != 202 || status("sk-new") != 403 {
		t.Fatal("before the reload")
	}
	if ok, err := c.attr.keys.reload(); ok || err != nil {
		t.Errorf("reload of an unchanged file = %v, %v; want false, nil", ok, err)
	}
	touch := func(data string, age time.Duration) {
		t.Helper()
		writeFile(t, dir, "keys.json", data)
		at := time.Now().Add(-age)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// sk-new (sha256 below) replaces sk-search.
	touch(`{"keys":[{"sha256":"`+"8da9a7efee51ce8615fe40f891bb33ed0da172afab224ae4c3f434dedbdfcfe3"+`","name":"x","tags":{"team":"x"}}]}`, time.Hour)
	if ok, err := c.attr.keys.reload(); !ok || err != nil {
		t.Fatalf("reload = %v, %v; want true, nil", ok, err)
	}
	if status(keySearch) != 403 || status("sk-new") != 202 {
		t.Error("after the reload, the removed key still works or the new one does not")
	}
	// A broken file is refused once, and the keys in force stay.
	touch(`{"keys":[{"sha256":"abc"}]}`, 2*time.Hour)
	_, err := c.attr.keys.reload()
	if want := `reload keys file ` + path + `: load API keys ` + path + `: keys[0]: sha256 "abc" is not 64 hex digits`; err == nil || err.Error() != want {
		t.Errorf("reload of a broken file = %v, want %s", err, want)
	}
	if ok, err := c.attr.keys.reload(); ok || err != nil {
		t.Errorf("second look at the broken file = %v, %v; want false, nil", ok, err)
	}
	if got := testutil.ToFloat64(c.attr.keys.reloads.WithLabelValues("keys", "error")); got != 1 {
		t.Errorf("reloads{keys, error} = %v, want 1", got)
	}
	if c.attr.keys.get().Len() != 1 {
		t.Errorf("%d keys in force, want 1", c.attr.keys.get().Len())
	}
	// Removing the file is refused too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := c.attr.keys.reload(); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("reload of a removed file = %v", err)
	}
	touch(testKeys, 3*time.Hour)
	if ok, err := c.attr.keys.reload(); !ok || err != nil || status(keySearch) != 202 {
		t.Errorf("reload of the fixed file = %v, %v", ok, err)
	}
}

// Run polls the files: a changed policy is in force without a restart.
func TestRunReloadsPolicy(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "policy.yaml", "default: {policy: reject}")
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	c := newCollector(t, nc, Config{Addr: "127.0.0.1:0", TagPolicyFile: path, FilePoll: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	line := `{"id":"r-1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1}}`
	testkit.Eventually(t, 5*time.Second, "collector listening", func() bool { return c.Addr() != "" })
	if rec := post(t, c.Handler(), event.ContentNDJSON, line); !strings.Contains(rec.Body.String(), `"accepted":0`) {
		t.Fatalf("before the change: %s", rec.Body)
	}
	writeFile(t, dir, "policy.yaml", "default: {policy: reject, required: []}")
	testkit.Eventually(t, 10*time.Second, "the new policy in force", func() bool {
		return strings.Contains(post(t, c.Handler(), event.ContentNDJSON, line).Body.String(), `"accepted":1`)
	})
}

func TestAttributionConfig(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{KeysFile: filepath.Join(dir, "missing.json")}, "load keys file: open " + filepath.Join(dir, "missing.json") + ": no such file or directory"},
		{Config{KeysFile: writeFile(t, dir, "bad.json", `{"keys":[{"sha256":"x","tags":{"team":"a"}}]}`)},
			"load API keys " + filepath.Join(dir, "bad.json") + `: keys[0]: sha256 "x" is not 64 hex digits`},
		{Config{TagPolicyFile: writeFile(t, dir, "bad.yaml", "default: {policy: maybe}")},
			"load tag policy " + filepath.Join(dir, "bad.yaml") + `: default.policy: "maybe" is not reject or unallocated`},
		{Config{FilePoll: time.Millisecond}, "invalid collector config: -file-poll (1ms) must be at least 10ms"},
	} {
		if _, err := New(tc.cfg, nc); err == nil || err.Error() != tc.want {
			t.Errorf("New(%+v) = %v, want %s", tc.cfg, err, tc.want)
		}
	}
}

// FuzzRequestKey checks that whatever a client sends as credentials, the key read is trimmed
// and comes from the headers it was sent in.
func FuzzRequestKey(f *testing.F) {
	f.Add("Bearer sk-1", "")
	f.Add("bearer  sk-1 ", "sk-2")
	f.Add("Basic x", " sk-2 ")
	f.Add("Bearer", "\x00")
	f.Fuzz(func(t *testing.T, auth, key string) {
		h := http.Header{"Authorization": {auth}, HeaderKey: {key}}
		got := requestKey(h)
		if got != strings.TrimSpace(got) {
			t.Fatalf("requestKey = %q, not trimmed", got)
		}
		if got != "" && !strings.Contains(auth, got) && !strings.Contains(key, got) {
			t.Fatalf("requestKey = %q, from neither %q nor %q", got, auth, key)
		}
	})
}
