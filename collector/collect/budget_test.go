package collect

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/schemas/natstest"
)

func TestIngestRefusesTeamOverHardCap(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	natstest.Streams(t, nc, nil)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enf := budget.NewEnforcer(func() time.Time { return testNow }, nil)
	if err := enf.Watch(ctx, js); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, budget.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(budget.Record{Name: "search-monthly", Scope: "team=search", PeriodStart: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), LimitUSD: "100.000000000000", SpentUSD: "105.000000000001",
		State: budget.StateHardCapped, Policy: budget.PolicyRefuse})
	if _, err := kv.Put(ctx, "search-monthly", rec); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 5*time.Second, "cap loaded", func() bool { _, o := enf.Over(map[string]string{"team": "search"}); return o })
	c := newCollector(t, nc, Config{Budgets: enf})

	only := `{"id":"s1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1,"output_tokens":1},"tags":{"team":"search"}}`
	res := post(t, c.Handler(), "application/x-ndjson", only)
	reason := `team "search" is over the hard cap of budget "search-monthly": 105.000000000001 USD spent of 100.000000000000 USD since 2026-11-01; its events are refused until 2026-12-01 or until the budget is raised`
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
