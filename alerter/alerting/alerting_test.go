package alerting

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/alerter/budget"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/state"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// webhook records the Alertmanager v4 payloads it receives.
type webhook struct {
	mu  sync.Mutex
	got []map[string]any
	srv *httptest.Server
}

func newWebhook(t *testing.T) *webhook {
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		w.mu.Lock()
		w.got = append(w.got, p)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// statuses lists each notification as "status alertname/status…".
func (w *webhook) statuses() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, p := range w.got {
		s := p["status"].(string)
		for _, a := range p["alerts"].([]any) {
			am := a.(map[string]any)
			s += " " + am["labels"].(map[string]any)["alertname"].(string) + "/" + am["status"].(string)
		}
		out = append(out, s)
	}
	return out
}

func publish(t *testing.T, js jetstream.JetStream, rows []batch.Row) {
	t.Helper()
	data, err := batch.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: stream.EnrichedSubject(0), Data: data, Header: nats.Header{}}
	m.Header.Set(stream.HeaderSchema, batch.SchemaName)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

type env struct {
	t     *testing.T
	ns    *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	db    string
	clock *fakeClock
	rules string
}

func newEnv(t *testing.T, rulesYAML string) *env {
	ns := natstest.Start(t, t.TempDir(), -1)
	return newEnvOn(t, ns, natstest.Connect(t, ns), rulesYAML)
}

// newEnvOn is newEnv on the server ns, nc being a connection that may create the streams.
func newEnvOn(t *testing.T, ns *server.Server, nc *nats.Conn, rulesYAML string) *env {
	js := streamtest.Streams(t, nc, nil)
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(rulesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ns: ns, nc: nc, js: js, db: db, clock: &fakeClock{t: time.Now().UTC().Truncate(time.Minute).Add(10 * time.Second)}, rules: path}
}

// start runs an alerter until the test ends or stop is called.
func (e *env) start() (a *Alerter, stop func()) {
	e.t.Helper()
	return e.startWith(e.nc, nil)
}

// startWith runs an alerter on nc with the config edit makes.
func (e *env) startWith(nc *nats.Conn, edit func(*Config)) (a *Alerter, stop func()) {
	e.t.Helper()
	cfg := Config{RulesFile: e.rules, ClickHouseDSN: chtest.DSN(), Database: e.db, Now: e.clock.Now}
	if edit != nil {
		edit(&cfg)
	}
	a, err := New(cfg, nc)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			a.WaitNotifications()
			a.Stop()
		}
	}
	e.t.Cleanup(stop)
	return a, stop
}

// tickAt evaluates at the clock's time plus d and waits for the notifications it sends.
func (e *env) tickAt(a *Alerter, at time.Time) {
	e.clock.Set(at)
	a.Tick(context.Background())
	a.WaitNotifications()
}

func waitEvents(t *testing.T, a *Alerter, n float64) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, "alerter reads the enriched events", func() bool { return testutil.ToFloat64(a.m.events) >= n })
}

const burstRules = `
builtins: {unpriced_model: false, untagged_share: false, team_spike: false, tier_fallback: false}
rules:
  - name: team-burst
    kind: threshold
    group_by: [team]
    window: 5m
    above: "10"
    keep_firing_for: 2m
    severity: page
route:
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1m
receivers:
  - name: oncall
    webhook: {url: "%s"}
`

// TestSpikeFiresOncePagesOnceAcrossRestartsAndResolves is the end-to-end path: enriched
// batches in JetStream → the alerter's window → firing → exactly one webhook notification;
// a restart while firing sends nothing again; the resolve is sent once, also across a
// restart while resolving; every transition lands in alert_history.
func TestSpikeFiresOncePagesOnceAcrossRestartsAndResolves(t *testing.T) {
	hook := newWebhook(t)
	e := newEnv(t, strings.Replace(burstRules, "%s", hook.srv.URL, 1))
	t0 := e.clock.Now()
	a, stop := e.start()
	publish(t, e.js, []batch.Row{
		{ID: "e1", Time: t0.Add(-5 * time.Second), Team: "search", Model: "gpt-4o", Feature: "chat", Priced: true, CostPico: 7 * rules.PicoPerUSD},
		{ID: "e2", Time: t0.Add(-4 * time.Second), Team: "search", Model: "gpt-4o-mini", Feature: "chat", Priced: true, CostPico: 5 * rules.PicoPerUSD},
		{ID: "e3", Time: t0.Add(-4 * time.Second), Team: "support", Model: "gpt-4o", Priced: true, CostPico: 3 * rules.PicoPerUSD},
	})
	waitEvents(t, a, 3)
	e.tickAt(a, t0)
	if got := hook.statuses(); len(got) != 0 {
		t.Fatalf("before group_wait: %v", got)
	}
	e.tickAt(a, t0.Add(2*time.Second))
	if got, want := strings.Join(hook.statuses(), "; "), "firing team-burst/firing"; got != want {
		t.Fatalf("notifications = %q, want %q", got, want)
	}
	hook.mu.Lock()
	first := hook.got[0]["alerts"].([]any)[0].(map[string]any)
	hook.mu.Unlock()
	ann := first["annotations"].(map[string]any)
	if got, want := ann["summary"], "team=search cost is 12.00 USD over the last 5m, above 10.00 USD"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	if got := first["labels"].(map[string]any)["team"]; got != "search" {
		t.Errorf("team label = %v", got)
	}

	// The KV record of the alert says firing and that oncall was told.
	bucket, err := e.js.KeyValue(context.Background(), kv.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	fp := first["fingerprint"].(string)
	entry, err := bucket.Get(context.Background(), fp)
	if err != nil {
		t.Fatalf("KV record %s: %v", fp, err)
	}
	var rec state.Record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Rule != "team-burst" || rec.State != "firing" || rec.Value != "12.000000000000" || rec.Notified["oncall"].Status != "firing" ||
		!rec.Since.Equal(t0) || rec.Labels["team"] != "search" {
		t.Errorf("KV record = %+v", rec)
	}

	// Restart while firing: the new alerter restores the alert and rebuilds its window from
	// the stream; it pages nobody again.
	stop()
	a, stop = e.start()
	waitEvents(t, a, 3)
	for s := 3; s <= 120; s += 5 {
		e.tickAt(a, t0.Add(time.Duration(s)*time.Second))
	}
	if got := hook.statuses(); len(got) != 1 {
		t.Fatalf("after a restart while firing: %v, want still the one page", got)
	}

	// The events leave the 5-minute window once minute t0+4m is complete; the alert
	// resolves keep_firing_for (2m) later. Restart in between, while it is clearing.
	e.tickAt(a, t0.Add(5*time.Minute+30*time.Second))
	stop()
	a, stop = e.start()
	for s := 330; s <= 600; s += 10 {
		e.tickAt(a, t0.Add(time.Duration(s)*time.Second))
	}
	if got, want := strings.Join(hook.statuses(), "; "), "firing team-burst/firing; resolved team-burst/resolved"; got != want {
		t.Fatalf("notifications = %q, want %q", got, want)
	}
	// Another restart after the resolve was sent: nothing more.
	stop()
	a, stop = e.start()
	for s := 610; s <= 900; s += 30 {
		e.tickAt(a, t0.Add(time.Duration(s)*time.Second))
	}
	if got := hook.statuses(); len(got) != 2 {
		t.Fatalf("after the final restart: %v", got)
	}
	if _, err := bucket.Get(context.Background(), fp); err == nil {
		t.Error("the resolved and notified alert is still in the KV bucket")
	}
	stop()

	conn := chtest.Conn(t)
	rows, err := conn.Query(context.Background(), "SELECT from_state, to_state, toString(value), toString(level), rule FROM "+e.db+".alert_history ORDER BY at, to_state")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var from, to, value, level, rule string
		if err := rows.Scan(&from, &to, &value, &level, &rule); err != nil {
			t.Fatal(err)
		}
		v, _ := decimal.NewFromString(value)
		l, _ := decimal.NewFromString(level)
		got = append(got, from+">"+to+" "+rule+" "+v.String()+"/"+l.String())
	}
	if want := "inactive>firing team-burst 12/10; firing>resolved team-burst 12/10"; strings.Join(got, "; ") != want {
		t.Errorf("alert_history = %q, want %q", strings.Join(got, "; "), want)
	}
}

const budgetRules = `
builtins: {unpriced_model: false, untagged_share: false, team_spike: false, tier_fallback: false}
budgets:
  - name: search-monthly
    scope: {team: search}
    limit_usd: "100"
    alert_at_percent: [50, 90]
    hard_cap_percent: 100
  - name: support-monthly
    scope: {team: support}
    limit_usd: "100"
route:
  group_wait: 0s
receivers:
  - name: finops
    webhook: {url: "%s"}
`

func TestBudgetsPublishHardCapAndSoftCapAlerts(t *testing.T) {
	hook := newWebhook(t)
	e := newEnv(t, strings.Replace(budgetRules, "%s", hook.srv.URL, 1))
	// Mid-month, so that the forecast alert (which waits 3 days into a period) is judged.
	now := time.Date(2026, 11, 20, 12, 0, 10, 0, time.UTC)
	e.clock.Set(now)
	a, _ := e.start()
	publish(t, e.js, []batch.Row{
		{ID: "b1", Time: now.Add(-time.Minute), Team: "search", Priced: true, CostPico: 60 * rules.PicoPerUSD},
		{ID: "b2", Time: now.Add(-time.Minute), Team: "search", Priced: true, CostPico: 45*rules.PicoPerUSD + 1},
		{ID: "b3", Time: now.Add(-time.Minute), Team: "support", Priced: true, CostPico: 10 * rules.PicoPerUSD},
	})
	waitEvents(t, a, 3)
	e.tickAt(a, now)
	bucket, err := e.js.KeyValue(context.Background(), kv.Budgets)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) kv.Budget {
		entry, err := bucket.Get(context.Background(), name)
		if err != nil {
			t.Fatalf("budget %s: %v", name, err)
		}
		var r kv.Budget
		if err := json.Unmarshal(entry.Value(), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	s := get("search-monthly")
	start, end := budget.Period(&rules.Budget{Period: rules.Monthly}, now)
	// No spend in the 7 days before today: the run-rate adds nothing to the forecast.
	if s.State != kv.StateHardCapped || s.SpentUSD != "105.000000000001" || s.LimitUSD != "100.000000000000" || s.ForecastUSD != "105.000000000001" ||
		s.Scope != "team=search" || s.Policy != "refuse" || !s.PeriodStart.Equal(start) || !s.PeriodEnd.Equal(end) {
		t.Errorf("search-monthly = %+v", s)
	}
	if r := get("support-monthly"); r.State != kv.StateOK || r.SpentUSD != "10.000000000000" {
		t.Errorf("support-monthly = %+v", r)
	}
	e.tickAt(a, now.Add(time.Second))
	got := strings.Join(hook.statuses(), "; ")
	if got != "firing budget_forecast/firing; firing budget_soft_cap/firing budget_soft_cap/firing" {
		t.Errorf("notifications = %q, want the forecast, then both soft caps (50%% and 90%%) in one", got)
	}
}

func TestReloadRefusesBrokenFileAndKeepsRules(t *testing.T) {
	hook := newWebhook(t)
	e := newEnv(t, strings.Replace(burstRules, "%s", hook.srv.URL, 1))
	a, _ := e.start()
	if err := os.WriteFile(e.rules, []byte("rules:\n  - name: x\n    kind: thresold\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := a.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `kind: "thresold" is not threshold, change, creep, anomaly or runaway`) {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	if r := a.Rules().Rules; len(r) != 1 || r[0].Name != "team-burst" {
		t.Fatalf("rules after a refused reload = %+v", r)
	}
	if testutil.ToFloat64(a.m.reloadFailures) != 1 {
		t.Errorf("reload failures = %v", testutil.ToFloat64(a.m.reloadFailures))
	}
	// Polled again, the same broken file is not reported again.
	if err := a.Reload(context.Background()); err != nil || testutil.ToFloat64(a.m.reloadFailures) != 1 {
		t.Errorf("second Reload of the broken file = %v, failures %v; want nil, 1", err, testutil.ToFloat64(a.m.reloadFailures))
	}
	good := strings.Replace(burstRules, `above: "10"`, `above: "20"`, 1)
	if err := os.WriteFile(e.rules, []byte(strings.Replace(good, "%s", hook.srv.URL, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := a.Rules().Rules; r[0].Above != 20*rules.PicoPerUSD {
		t.Errorf("after a good reload, above = %d", r[0].Above)
	}
}

// TestClickHouseWritesAreNotDeduplicated: the alerter writes alert_history through Distributed
// tables on a cluster, where a Replicated table would drop a block identical to a recent one;
// its connection turns that off itself (chcluster.WriteOptions), with no DSN setting needed.
func TestClickHouseWritesAreNotDeduplicated(t *testing.T) {
	e := newEnv(t, strings.Replace(burstRules, "%s", "http://127.0.0.1:1", 1))
	a, _ := e.start()
	chtest.CheckWriterSettings(t, a.ch)
}
