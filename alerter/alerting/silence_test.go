package alerting

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/testkit"
)

// A silence made through the alerter's API (as `tokenmeter silence add` makes it) mutes the
// alert it matches and no other, is still in force after a restart, and once expired lets the
// page through.
func TestSilenceThroughTheAPI(t *testing.T) {
	hook := newWebhook(t)
	e := newEnv(t, strings.Replace(burstRules, "%s", hook.srv.URL, 1))
	t0 := e.clock.Now()
	a, stop := e.start()
	api := httptest.NewServer(a.SilenceHandler())
	post := func(body string) string {
		t.Helper()
		resp, err := http.Post(api.URL+"/api/v2/silences", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST: %s %s", resp.Status, b)
		}
		return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(string(b)), `{"silenceID":"`), `"}`)
	}
	id := post(`{"matchers":[{"name":"team","value":"search","isRegex":false}],"startsAt":"` + t0.Format(time.RFC3339) +
		`","endsAt":"` + t0.Add(time.Hour).Format(time.RFC3339) + `","createdBy":"alice","comment":"load test"}`)
	testkit.Eventually(t, 10*time.Second, "the alerter to take the silence", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.runtime) == 1
	})
	publish(t, e.js, []batch.Row{
		{ID: "e1", Time: t0.Add(-5 * time.Second), Team: "search", Model: "gpt-4o", Priced: true, CostPico: 12 * rules.PicoPerUSD},
		{ID: "e2", Time: t0.Add(-4 * time.Second), Team: "support", Model: "gpt-4o", Priced: true, CostPico: 11 * rules.PicoPerUSD},
	})
	waitEvents(t, a, 2)
	e.tickAt(a, t0)
	e.tickAt(a, t0.Add(2*time.Second))
	if got, want := strings.Join(hook.statuses(), "; "), "firing team-burst/firing"; got != want {
		t.Fatalf("notifications = %q, want %q (support's page; search's silenced)", got, want)
	}
	hook.mu.Lock()
	team := hook.got[0]["alerts"].([]any)[0].(map[string]any)["labels"].(map[string]any)["team"]
	hook.mu.Unlock()
	if team != "support" {
		t.Fatalf("paged for team %v, want support", team)
	}

	// A restart keeps the silence: still no page for search.
	api.Close()
	stop()
	a, stop = e.start()
	defer stop()
	api = httptest.NewServer(a.SilenceHandler())
	defer api.Close()
	testkit.Eventually(t, 10*time.Second, "the restarted alerter to take the silence", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.runtime) == 1
	})
	waitEvents(t, a, 2)
	for s := 3; s <= 63; s += 5 {
		e.tickAt(a, t0.Add(time.Duration(s)*time.Second))
	}
	if got := hook.statuses(); len(got) != 1 {
		t.Fatalf("after a restart: %v, want still only support's page", got)
	}

	// Expired: search's alert, still firing, pages at the next group interval.
	req, _ := http.NewRequest(http.MethodDelete, api.URL+"/api/v2/silence/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	testkit.Eventually(t, 10*time.Second, "the alerter to see the silence expired", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.runtime) == 1 && !a.runtime[0].EndsAt.After(e.clock.Now())
	})
	for s := 65; s <= 130; s += 5 {
		e.tickAt(a, t0.Add(time.Duration(s)*time.Second))
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	var teams []string
	for _, n := range hook.got {
		for _, al := range n["alerts"].([]any) {
			teams = append(teams, al.(map[string]any)["labels"].(map[string]any)["team"].(string))
		}
	}
	if got := strings.Join(teams, ","); !strings.Contains(got, "search") {
		t.Errorf("alerts notified: %s; want search's once its silence expired", got)
	}
}
