package dispatch

import (
	"os"
	"testing"

	"github.com/tokenmeter/tokenmeter/alerter/notify"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// TestBudgetAlertInhibitsTheTeamsSpike: with rules/testdata/inhibit.yaml, a team's firing
// budget alert keeps its spike alert from being notified — not another team's — until the
// budget alert resolves; a resolve already owed for the spike is still sent.
func TestBudgetAlertInhibitsTheTeamsSpike(t *testing.T) {
	data, err := os.ReadFile("../rules/testdata/inhibit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := rules.Parse("inhibit.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	h := newHook(t)
	d, c, _ := setup(t, h)
	d.SetInhibitRules(f.InhibitRules)
	alert := func(name, team, status string) notify.Alert {
		return notify.Alert{Status: status, Labels: map[string]string{"alertname": name, "team": team, "severity": "page"},
			Fingerprint: name + "/" + team, StartsAt: t0}
	}
	d.Update(alert("budget_soft_cap", "search", notify.StatusFiring))
	d.Update(alert("team_spike", "search", notify.StatusFiring))
	d.Update(alert("team_spike", "support", notify.StatusFiring))
	d.flushAt(c, 3)
	if got, want := h.take(), "firing: budget_soft_cap/firing | firing: team_spike/firing"; got != want {
		t.Fatalf("first notifications = %q, want %q (search's spike muted, support's not)", got, want)
	}
	// The budget alert resolves: search's spike is no longer muted and is notified with it.
	c.Set(60)
	d.Update(alert("budget_soft_cap", "search", notify.StatusResolved))
	d.flushAt(c, 63)
	if got, want := h.take(), "firing: budget_soft_cap/resolved,team_spike/firing"; got != want {
		t.Fatalf("after the budget resolved: %q, want %q", got, want)
	}
	// The budget alert fires again while the spike, already notified, resolves: the resolve
	// is owed and is sent.
	c.Set(120)
	d.Update(alert("budget_soft_cap", "search", notify.StatusFiring))
	d.Update(alert("team_spike", "search", notify.StatusResolved))
	d.flushAt(c, 123)
	if got, want := h.take(), "firing: budget_soft_cap/firing,team_spike/resolved"; got != want {
		t.Fatalf("resolve while inhibited: %q, want %q", got, want)
	}
	// A spike that starts while the budget alert fires, and resolves before it stops, is
	// never notified at all.
	c.Set(150)
	d.Update(alert("team_spike", "search", notify.StatusFiring))
	d.flushAt(c, 183)
	c.Set(200)
	d.Update(alert("team_spike", "search", notify.StatusResolved))
	d.flushAt(c, 243)
	if got := h.take(); got != "" {
		t.Fatalf("muted spike: %q, want no notification", got)
	}
	if d.Holds("team_spike/search") {
		t.Error("the dispatcher still holds the muted, resolved spike")
	}
}
