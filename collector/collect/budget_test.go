package collect

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// capped starts a collector whose budget enforcer holds one hard cap on team search, under
// policy, and returns it with its JetStream.
func capped(t *testing.T, policy string) (*Collector, jetstream.JetStream) {
	t.Helper()
	return cappedBy(t, "search-monthly", kv.Budget{Name: "search-monthly", Scope: "team=search", PeriodStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), LimitUSD: "100.000000000000", SpentUSD: "105.000000000001",
		State: kv.StateHardCapped, Policy: policy}, map[string]string{"team": "search"}, "", Config{})
}

// cappedBy starts a collector with cfg whose budget enforcer holds rec under key, once it
// caps the tags and workflow given, and returns it with its JetStream.
func cappedBy(t *testing.T, key string, rec kv.Budget, tags map[string]string, workflow string, cfg Config) (*Collector, jetstream.JetStream) {
	t.Helper()
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	streamtest.Streams(t, nc, nil)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	enf := budget.NewEnforcer(func() time.Time { return testNow }, nil)
	if err := enf.Watch(ctx, js); err != nil {
		t.Fatal(err)
	}
	bucket, err := js.KeyValue(ctx, kv.Budgets)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(rec)
	if _, err := bucket.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "cap loaded", func() bool { _, o := enf.Over(tags, workflow); return o })
	cfg.Budgets = enf
	return newCollector(t, nc, cfg), js
}

const capReason = `team "search" is over the hard cap of budget "search-monthly": 105.000000000001 USD spent of 100.000000000000 USD since 2026-11-01; its events are refused until 2026-12-01 or until the budget is raised`

func TestIngestRefusesTeamOverHardCap(t *testing.T) {
	c, _ := capped(t, kv.PolicyRefuse)
	only := `{"id":"s1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1},"tags":{"team":"search"}}`
	res := post(t, c.Handler(), "application/x-ndjson", only)
	reason := capReason
	if res.Code != http.StatusTooManyRequests || res.Body.String() != mustJSON(t, failure{Error: reason}) {
		t.Errorf("all capped: %d %s", res.Code, res.Body)
	}
	mixed := only + "\n" + `{"id":"p1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1},"tags":{"team":"support"}}`
	res = post(t, c.Handler(), "application/x-ndjson", mixed)
	var got accepted
	if err := json.Unmarshal(res.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if res.Code != http.StatusAccepted || got.Accepted != 1 || len(got.Rejected) != 1 || got.Rejected[0].Index != 0 ||
		got.Rejected[0].ID != "s1" || got.Rejected[0].Error != "budget: "+reason {
		t.Errorf("mixed: %d %s", res.Code, res.Body)
	}
}

// A team is the team the enricher charges, however the event spells it: the cap compares
// values normalised as the enricher stores them.
func TestIngestRefusesTeamOverHardCapWhateverItsSpelling(t *testing.T) {
	c, js := capped(t, kv.PolicyRefuse)
	for _, team := range []string{"Search", "search ", " SEARCH", "search!"} {
		body := fmt.Sprintf(`{"id":"s1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1},"tags":{"team":%q}}`, team)
		res := post(t, c.Handler(), "application/x-ndjson", body)
		if want := mustJSON(t, failure{Error: capReason}); res.Code != http.StatusTooManyRequests || res.Body.String() != want {
			t.Errorf("team %q: %d %s, want 429 %s", team, res.Code, res.Body, want)
		}
	}
	if n := len(streamtest.Messages(t, js, stream.Raw)); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
}

// OTLP spans of a capped team are refused like events: the export is answered 200 with the
// spans rejected in partial_success (an OTLP exporter retries a 429 until the period ends),
// and nothing is stored. Under the flag policy they are stored with the flag tag.
func TestTracesHonourHardCaps(t *testing.T) {
	c, js := capped(t, kv.PolicyRefuse)
	rec := send(t, c.Handler(), "/v1/traces", "application/json", otlpSpan("Search"))
	want := `{"partialSuccess":{"rejectedSpans":"1","errorMessage":"span otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174: budget: ` +
		strings.ReplaceAll(capReason, `"`, `\"`) + `"}}`
	if rec.Code != http.StatusOK || compactJSON(t, rec.Body.Bytes()) != want {
		t.Errorf("refuse: %d %s, want 200 %s", rec.Code, rec.Body, want)
	}
	if n := len(streamtest.Messages(t, js, stream.Raw)); n != 0 {
		t.Errorf("refuse: %d messages stored, want none", n)
	}

	c, js = capped(t, kv.PolicyFlag)
	rec = send(t, c.Handler(), "/v1/traces", "application/json", otlpSpan("search"))
	if rec.Code != http.StatusOK || compactJSON(t, rec.Body.Bytes()) != `{}` {
		t.Errorf("flag: %d %s, want 200 {}", rec.Code, rec.Body)
	}
	wantTags := map[string]map[string]string{"otel-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174": {
		"team": "search", "service": "bot", kv.FlagTag: "search-monthly",
	}}
	if got := storedTags(t, js); !reflect.DeepEqual(got, wantTags) {
		t.Errorf("flag: stored tags = %v, want %v", got, wantTags)
	}
}
