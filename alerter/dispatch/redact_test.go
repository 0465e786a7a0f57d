package dispatch

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/notify"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// TestWarningLogHidesTheSlackToken performs the attack of the issue: a Slack receiver whose
// server drops the connection, so that Go's HTTP client returns a *url.Error quoting the
// webhook URL, token included. The dispatcher logs the failure; the log must not show the
// token.
func TestWarningLogHidesTheSlackToken(t *testing.T) {
	const token = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	var logs bytes.Buffer
	c := &clock{t: t0}
	d := New(Config{
		Route:     rules.Route{GroupBy: []string{"team"}, GroupInterval: time.Minute, RepeatInterval: time.Hour},
		Receivers: []Receiver{{Name: "slack", Notifier: &notify.Slack{URL: srv.URL + "/services/" + token}}},
		Now:       c.Now, Sleep: c.Sleep, Attempts: 2,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	d.Update(alertOf("a", notify.StatusFiring))
	d.Flush(context.Background())
	d.Wait()
	out := logs.String()
	if !strings.Contains(out, "notification not delivered") || !strings.Contains(out, srv.URL+"/…") {
		t.Fatalf("log does not report the failure:\n%s", out)
	}
	if strings.Contains(out, "XXXXXXXX") || strings.Contains(out, "B00000000") {
		t.Errorf("log shows the webhook token:\n%s", out)
	}
}
