package alerting

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/stage/keyset"
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

// The ids and responses the alerter remembers stay within SeenMaxBytes at any rate: 100
// events a second for 100 s against a bound of 4,000 keys a set keep the last ~40 s, no
// less than MinSeenWindow, so a copy 25 s late is still caught and one 90 s late — inside
// SeenWindow, past the bound — counts again. Unbounded, the sets hold all 10,000.
func TestSeenIsBounded(t *testing.T) {
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	now := start
	const perSecond, seconds, bound = 100, 100, 4_000
	s := newSeen(func() time.Time { return now }, bound*keyset.BytesPerKey*2)
	row := func(i int) *batch.Row {
		return &batch.Row{ID: fmt.Sprintf("evt-%d", i), Provider: "openai", ResponseID: fmt.Sprintf("chatcmpl-%d", i),
			Time: start.Add(time.Duration(i) * time.Second / perSecond)}
	}
	// A batch a second, each counted as the alerter counts a message's rows.
	for sec := range seconds {
		now = start.Add(time.Duration(sec) * time.Second)
		s.expire()
		rows := make([]batch.Row, perSecond)
		for j := range rows {
			rows[j] = *row(sec*perSecond + j)
		}
		s.prepare(rows)
		for j := range rows {
			if s.duplicate(j, &rows[j], now) {
				t.Fatalf("event %d: a new event taken for a copy", sec*perSecond+j)
			}
		}
	}
	s.expire()
	for name, set := range map[string]*keyset.Set{"ids": s.ids, "responses": s.responses} {
		if n := set.Len(); n > bound || n < int(MinSeenWindow/time.Second)*perSecond {
			t.Errorf("%s hold %d keys, want between %v (MinSeenWindow) and %d", name, n, MinSeenWindow.Seconds()*perSecond, bound)
		}
	}
	one := func(r *batch.Row) bool {
		rows := []batch.Row{*r}
		s.prepare(rows)
		return s.duplicate(0, &rows[0], now)
	}
	late := perSecond * seconds
	if !one(row(late - 25*perSecond)) {
		t.Errorf("a copy 25 s late was counted again, want it caught")
	}
	if one(row(late - 90*perSecond)) {
		t.Errorf("a copy 90 s late was caught: the sets kept more than the bound")
	}
	// A second report of a call, under another id, is caught by its response.
	sdk := row(late - 10*perSecond)
	sdk.ID = "sdk-report"
	if !one(sdk) {
		t.Errorf("a second report of a call 10 s late was counted again, want it caught")
	}
}
