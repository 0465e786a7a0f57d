package alerting

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/testkit"
)

// A copy of an event and a second report of its call count once, as in ClickHouse: $7 sent
// three times — again under its id, and by an SDK under another id with the same response —
// is $7 in the window, not $21 (which would page above $10).
func TestCopiesCountOnce(t *testing.T) {
	hook := newWebhook(t)
	e := newEnv(t, strings.Replace(burstRules, "%s", hook.srv.URL, 1))
	t0 := e.clock.Now()
	a, _ := e.start()
	call := batch.Row{ID: "proxy-1", Time: t0.Add(-5 * time.Second), Provider: "openai", ResponseID: "chatcmpl-1", Team: "search",
		Model: "gpt-4o", Priced: true, CostPico: 7 * rules.PicoPerUSD}
	sdk := call
	sdk.ID, sdk.Provider = "sdk-1", "OpenAI"
	other := call
	other.ID, other.ResponseID, other.CostPico = "proxy-2", "chatcmpl-2", 2*rules.PicoPerUSD
	publish(t, e.js, []batch.Row{call, call, sdk, other})
	testkit.Eventually(t, 10*time.Second, "every row read", func() bool {
		return testutil.ToFloat64(a.m.events)+testutil.ToFloat64(a.m.duplicates) == 4
	})
	if got, dups := testutil.ToFloat64(a.m.events), testutil.ToFloat64(a.m.duplicates); got != 2 || dups != 2 {
		t.Fatalf("counted %v, duplicates %v; want 2 and 2", got, dups)
	}
	e.tickAt(a, t0)
	e.tickAt(a, t0.Add(2*time.Second))
	if got := hook.statuses(); len(got) != 0 {
		t.Errorf("notifications %v: $9 counted, below the $10 threshold, want none", got)
	}
}
