package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type received struct {
	path, contentType string
	body              string
}

// receiver answers status to every request and records them.
func receiver(t *testing.T, status int) (*httptest.Server, *[]received) {
	t.Helper()
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, received{r.URL.Path, r.Header.Get("Content-Type"), string(b)})
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

var (
	t0 = time.Date(2026, 2, 2, 11, 8, 15, 0, time.UTC)
	t1 = time.Date(2026, 2, 2, 11, 29, 15, 0, time.UTC)
)

func firing() Alert {
	return Alert{
		Status:      StatusFiring,
		Labels:      map[string]string{"alertname": "team_spike", "severity": "page", "team": "search"},
		Annotations: map[string]string{"summary": "team=search cost is 4.52 USD over the last 15m, 3.01× the usual 1.50 USD"},
		Fingerprint: "a1b2c3d4e5f60718", StartsAt: t0, ValidUntil: t0.Add(time.Hour),
		Value: "4.52 USD", Level: "3.00 USD", Baseline: "1.50 USD", Window: "15m",
		BaselineMethod: "median of the same 15m 1 to 4 × 168h earlier; level max(median × 2, median + 3 × 1.4826 × MAD)",
		Contributors:   []string{"feature chat 4.52 USD (+3.02 USD, 100.0% of the increase)", "model gpt-4o 4.00 USD (+2.90 USD, 96.0% of the increase)"},
		Causes:         []string{"volume +2.40 USD (79.7% of the increase): 30 → 75 calls", "cache +0.62 USD (20.3% of the increase): 80.0% → 100.0% of the list price paid"},
		Link:           "https://grafana.example/d/spend?team=search", Severity: "page",
	}
}

func resolved() Alert {
	a := firing()
	a.Status, a.EndsAt = StatusResolved, t1
	return a
}

func message(alerts ...Alert) *Message {
	return &Message{Receiver: "oncall", GroupKey: "oncall\x00alertname=team_spike", GroupLabels: map[string]string{"alertname": "team_spike"},
		Alerts: alerts, ExternalURL: "https://grafana.example/d/spend"}
}

func compact(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compact %s: %v", s, err)
	}
	return b.String()
}

// facts are firing()'s annotations as the webhook and the Alertmanager receive them: the
// summary and every fact of the alert.
const facts = `{"baseline":"1.50 USD",
	"baseline_method":"median of the same 15m 1 to 4 × 168h earlier; level max(median × 2, median + 3 × 1.4826 × MAD)",
	"causes":"volume +2.40 USD (79.7% of the increase): 30 → 75 calls; cache +0.62 USD (20.3% of the increase): 80.0% → 100.0% of the list price paid",
	"level":"3.00 USD","summary":"team=search cost is 4.52 USD over the last 15m, 3.01× the usual 1.50 USD",
	"top_contributors":"feature chat 4.52 USD (+3.02 USD, 100.0% of the increase); model gpt-4o 4.00 USD (+2.90 USD, 96.0% of the increase)",
	"value":"4.52 USD","window":"15m"}`

func TestWebhookSendsAlertmanagerV4Payload(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	w := &Webhook{URL: srv.URL + "/hook"}
	if retry, err := w.Notify(context.Background(), message(firing())); err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	want := compact(t, `{"version":"4","groupKey":"oncall\u0000alertname=team_spike","truncatedAlerts":0,"status":"firing","receiver":"oncall",
	"groupLabels":{"alertname":"team_spike"},
	"commonLabels":{"alertname":"team_spike","severity":"page","team":"search"},
	"commonAnnotations":`+facts+`,
	"externalURL":"https://grafana.example/d/spend",
	"alerts":[{"status":"firing","labels":{"alertname":"team_spike","severity":"page","team":"search"},
	"annotations":`+facts+`,
	"startsAt":"2026-02-02T11:08:15Z","endsAt":"0001-01-01T00:00:00Z",
	"generatorURL":"https://grafana.example/d/spend?team=search","fingerprint":"a1b2c3d4e5f60718"}]}`)
	if len(*got) != 1 || (*got)[0].body != want || (*got)[0].path != "/hook" || (*got)[0].contentType != "application/json" {
		t.Errorf("received %+v\nwant body %s", *got, want)
	}
}

func TestSlackMessageCarriesTheNumbers(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	s := &Slack{URL: srv.URL + "/services/T/B/X", Channel: "#spend"}
	if _, err := s.Notify(context.Background(), message(firing())); err != nil {
		t.Fatal(err)
	}
	text := ":rotating_light: *[FIRING] team_spike* team=search\n" +
		"team=search cost is 4.52 USD over the last 15m, 3.01× the usual 1.50 USD\n" +
		"Now: *4.52 USD* over 15m vs baseline 1.50 USD, level 3.00 USD\n" +
		"Baseline: median of the same 15m 1 to 4 × 168h earlier; level max(median × 2, median + 3 × 1.4826 × MAD)\n" +
		"Since 2026-02-02T11:08:15Z\n" +
		"Top contributors: feature chat 4.52 USD (+3.02 USD, 100.0% of the increase); model gpt-4o 4.00 USD (+2.90 USD, 96.0% of the increase)\n" +
		"Causes: volume +2.40 USD (79.7% of the increase): 30 → 75 calls; cache +0.62 USD (20.3% of the increase): 80.0% → 100.0% of the list price paid\n" +
		"<https://grafana.example/d/spend?team=search|Breakdown>"
	want, _ := json.Marshal(map[string]string{"channel": "#spend", "text": text})
	if len(*got) != 1 || (*got)[0].body != string(want) {
		t.Errorf("received %+v\nwant %s", *got, want)
	}
	if got := SlackText(message(resolved())); !strings.Contains(got, ":white_check_mark: *[RESOLVED] team_spike*") ||
		!strings.Contains(got, "Firing from 2026-02-02T11:08:15Z to 2026-02-02T11:29:15Z") {
		t.Errorf("resolved text:\n%s", got)
	}
}

func TestPagerDutyTriggersAndResolvesWithStableDedupKey(t *testing.T) {
	srv, got := receiver(t, http.StatusAccepted)
	p := &PagerDuty{URL: srv.URL + "/v2/enqueue", RoutingKey: "0123456789abcdef0123456789abcdef"}
	if _, err := p.Notify(context.Background(), message(firing())); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Notify(context.Background(), message(resolved())); err != nil {
		t.Fatal(err)
	}
	trigger := compact(t, `{"routing_key":"0123456789abcdef0123456789abcdef","event_action":"trigger","dedup_key":"a1b2c3d4e5f60718",
	"payload":{"summary":"team=search cost is 4.52 USD over the last 15m, 3.01× the usual 1.50 USD","source":"tokenmeter","severity":"critical",
	"timestamp":"2026-02-02T11:08:15Z","component":"team_spike",
	"custom_details":{"alertname":"team_spike","baseline":"1.50 USD",
	"baseline_method":"median of the same 15m 1 to 4 × 168h earlier; level max(median × 2, median + 3 × 1.4826 × MAD)",
	"causes":"volume +2.40 USD (79.7% of the increase): 30 → 75 calls; cache +0.62 USD (20.3% of the increase): 80.0% → 100.0% of the list price paid",
	"level":"3.00 USD","severity":"page","since":"2026-02-02T11:08:15Z","team":"search",
	"top_contributors":"feature chat 4.52 USD (+3.02 USD, 100.0% of the increase); model gpt-4o 4.00 USD (+2.90 USD, 96.0% of the increase)",
	"value":"4.52 USD","window":"15m"}},
	"links":[{"href":"https://grafana.example/d/spend?team=search","text":"Breakdown"}]}`)
	resolve := `{"routing_key":"0123456789abcdef0123456789abcdef","event_action":"resolve","dedup_key":"a1b2c3d4e5f60718"}`
	if len(*got) != 2 || (*got)[0].body != trigger || (*got)[1].body != resolve || (*got)[0].path != "/v2/enqueue" {
		t.Errorf("received %+v\nwant %s\nthen %s", *got, trigger, resolve)
	}
}

func TestAlertmanagerPush(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	a := &Alertmanager{URL: srv.URL}
	if _, err := a.Notify(context.Background(), message(firing(), resolved())); err != nil {
		t.Fatal(err)
	}
	ann := compact(t, facts)
	lab := `{"alertname":"team_spike","severity":"page","team":"search"}`
	want := `[{"labels":` + lab + `,"annotations":` + ann + `,"startsAt":"2026-02-02T11:08:15Z","endsAt":"2026-02-02T12:08:15Z","generatorURL":"https://grafana.example/d/spend?team=search"},` +
		`{"labels":` + lab + `,"annotations":` + ann + `,"startsAt":"2026-02-02T11:08:15Z","endsAt":"2026-02-02T11:29:15Z","generatorURL":"https://grafana.example/d/spend?team=search"}]`
	if len(*got) != 1 || (*got)[0].path != "/api/v2/alerts" || (*got)[0].body != want {
		t.Errorf("received %+v\nwant %s", *got, want)
	}
}

func TestFailuresSayWhetherToRetry(t *testing.T) {
	for _, c := range []struct {
		status int
		retry  bool
	}{{500, true}, {503, true}, {429, true}, {400, false}, {404, false}} {
		srv, _ := receiver(t, c.status)
		retry, err := (&Webhook{URL: srv.URL + "/secret-token"}).Notify(context.Background(), message(firing()))
		if err == nil || retry != c.retry {
			t.Errorf("status %d: retry %v err %v; want retry %v", c.status, retry, err, c.retry)
		}
		if err != nil && strings.Contains(err.Error(), "secret-token") {
			t.Errorf("status %d: the error shows the URL path: %v", c.status, err)
		}
	}
	retry, err := (&Webhook{URL: "http://127.0.0.1:1/x"}).Notify(context.Background(), message(firing()))
	if err == nil || !retry {
		t.Errorf("unreachable: retry %v err %v; want a retryable error", retry, err)
	}
}
