package alerting

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// rawHook records the bodies it receives, byte for byte.
type rawHook struct {
	mu     sync.Mutex
	bodies []string
	srv    *httptest.Server
}

func newRawHook(t *testing.T) *rawHook {
	h := &rawHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(b))
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *rawHook) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies...)
}

const explainRules = `
builtins: {unpriced_model: false, untagged_share: false, team_spike: false, tier_fallback: false}
rules:
  - name: team-minute
    kind: threshold
    group_by: [team]
    window: 1m
    above: "1"
    keep_firing_for: 0s
    severity: page
route: {group_by: [alertname], group_wait: 0s, group_interval: 1s}
receivers:
  - name: oncall
    webhook: {url: "%s"}
`

// TestWebhookPayloadExplainsTheSpike: a $5.40 burst on top of $0.07 a minute, sent at :55 of
// a minute and judged at :03 of the next (the minute is not complete yet, but its window
// counts), pages once and resolves once, and the webhook's annotations carry the value, the
// level, the baseline and how it is computed, the window and the top contributors of each
// dimension with their share of the increase over the minute before.
func TestWebhookPayloadExplainsTheSpike(t *testing.T) {
	hook := newRawHook(t)
	e := newEnv(t, strings.Replace(explainRules, "%s", hook.srv.URL, 1))
	spike := e.clock.Now().Truncate(time.Minute).Add(time.Minute) // the burst's minute
	a, _ := e.start()
	usd := func(cents int64) int64 { return cents * rules.PicoPerUSD / 100 }
	usual := func(at time.Time, id string) batch.Row {
		return batch.Row{ID: id, Time: at, Team: "search", Model: "gpt-4o-mini", Feature: "chat", PromptVersion: "v1", Priced: true, CostPico: usd(7),
			Tokens: event.Tokens{Input: 900, Output: 100}}
	}
	publish(t, e.js, []batch.Row{
		usual(spike.Add(-50*time.Second), "u1"),
		usual(spike.Add(10*time.Second), "u2"),
		{ID: "b1", Time: spike.Add(55 * time.Second), Team: "search", Model: "gpt-4o", Feature: "bulk-summarize", WorkflowID: "wf-7",
			PromptVersion: "v12", Priced: true, CostPico: usd(500), Tokens: event.Tokens{Input: 45_000, Output: 5_000}},
		{ID: "b2", Time: spike.Add(55 * time.Second), Team: "search", Model: "gpt-4o", Feature: "chat", PromptVersion: "v1", Priced: true, CostPico: usd(40),
			Tokens: event.Tokens{Input: 3_600, Output: 400}},
	})
	waitEvents(t, a, 4)
	firedAt := spike.Add(time.Minute + 3*time.Second)
	e.tickAt(a, firedAt)
	for s := 4; s <= 69; s++ { // through the minute becoming complete: no second page
		e.tickAt(a, spike.Add(time.Minute+time.Duration(s)*time.Second))
	}
	// The minute after the burst is complete at +2:10: clear, and keep_firing_for is 0.
	resolvedAt := spike.Add(2*time.Minute + 10*time.Second)
	for s := 0; s <= 10; s++ {
		e.tickAt(a, spike.Add(2*time.Minute+time.Duration(s)*time.Second))
	}
	const fp = "ca57d3af9bc407a9"
	// The causes against the minute before ($0.07: one call of 1,000 tokens): L = $5.40 /
	// ln(5.47 / 0.07); volume L·ln 3, size L·ln(18,333.3 / 1,000), mix L·ln(99.45 / 70), no
	// cache either way. gpt-4o and v12 had spent nothing before the burst's minute.
	since := ", new since " + spike.Format("15:04") + " UTC"
	ann := `{"baseline":"1.00 USD","baseline_method":"threshold: a fixed level; contributors against the 1m before",` +
		`"causes":"volume +1.361122805284 USD (25.2% of the increase): 1 → 3 calls; ` +
		`size +3.603752103773 USD (66.7% of the increase): 1000 → 18333 tokens per call; ` +
		`mix +0.435125090943 USD (8.0% of the increase): 70 → 99.45 USD per million tokens at list price; ` +
		`cache +0.00 USD (0.0% of the increase): 100.0% → 100.0% of the list price paid",` +
		`"level":"1.00 USD","summary":"team=search cost is 5.47 USD over the last 1m, above 1.00 USD",` +
		`"top_contributors":"feature bulk-summarize 5.00 USD (+5.00 USD, 92.5% of the increase); ` +
		`feature chat 0.47 USD (+0.40 USD, 7.4% of the increase); ` +
		`model gpt-4o 5.40 USD (+5.40 USD, 100.0% of the increase)` + since + `; ` +
		`model gpt-4o-mini 0.07 USD (+0.00 USD, 0.0% of the increase); ` +
		`prompt_version v12 5.00 USD (+5.00 USD, 92.5% of the increase)` + since + `; ` +
		`prompt_version v1 0.47 USD (+0.40 USD, 7.4% of the increase); ` +
		`workflow wf-7 5.00 USD (+5.00 USD, 92.5% of the increase); ` +
		`workflow (none) 0.47 USD (+0.40 USD, 7.4% of the increase)",` +
		`"value":"5.47 USD","window":"1m"}`
	labels := `{"alertname":"team-minute","severity":"page","team":"search"}`
	payload := func(status, ends string) string {
		return `{"version":"4","groupKey":"oncall:{alertname=\"team-minute\"}","truncatedAlerts":0,"status":"` + status + `","receiver":"oncall",` +
			`"groupLabels":{"alertname":"team-minute"},"commonLabels":` + labels + `,"commonAnnotations":` + ann + `,"externalURL":"",` +
			`"alerts":[{"status":"` + status + `","labels":` + labels + `,"annotations":` + ann + `,` +
			`"startsAt":"` + firedAt.Format(time.RFC3339) + `","endsAt":"` + ends + `","generatorURL":"","fingerprint":"` + fp + `"}]}`
	}
	want := []string{payload("firing", "0001-01-01T00:00:00Z"), payload("resolved", resolvedAt.Format(time.RFC3339))}
	got := hook.got()
	if len(got) != len(want) {
		t.Fatalf("%d notifications, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		var g, w bytes.Buffer
		if got[i] != want[i] {
			_ = json.Indent(&g, []byte(got[i]), "", "  ")
			_ = json.Indent(&w, []byte(want[i]), "", "  ")
			t.Errorf("notification %d:\n%s\nwant\n%s", i, g.String(), w.String())
		}
	}
}
