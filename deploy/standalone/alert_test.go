package standalone

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/testkit"
)

// TestSpikeReachesWebhookAndHardCapRefuses runs the whole loop in one process: an expensive
// event posted to the collector is priced, seen by the alerter and paged to a webhook
// exactly once, with the default evaluation interval and group_wait; a team over its hard
// cap is then refused by the collector with 429. The spike-to-webhook time is logged: it is
// the alert latency figure of docs/alerts.md.
func TestSpikeReachesWebhookAndHardCapRefuses(t *testing.T) {
	var mu sync.Mutex
	var got []string
	var firstAt time.Time
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Status string `json:"status"`
			Alerts []struct {
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		_ = json.NewDecoder(r.Body).Decode(&p)
		mu.Lock()
		defer mu.Unlock()
		if firstAt.IsZero() {
			firstAt = time.Now()
		}
		for _, a := range p.Alerts {
			got = append(got, p.Status+" "+a.Labels["alertname"]+" "+a.Labels["team"])
		}
	}))
	defer hook.Close()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(fmt.Sprintf(`
builtins: {unpriced_model: false, untagged_share: false, team_spike: false}
rules:
  - {name: team-burst, kind: threshold, group_by: [team], window: 5m, above: "1", severity: page}
budgets:
  - {name: capped-monthly, scope: {team: capped}, limit_usd: "1", alert_at_percent: [100], hard_cap_percent: 100}
route: {group_by: [alertname, team]}
receivers:
  - {name: oncall, match: {alertname: team-burst}, webhook: {url: %q}}
`, hook.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	conn := openClickHouse(t)
	db := freshDatabase(t, conn)
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	p, err := Start(ctx, Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", ClickHouseDSN: clickhouseDSN(), Database: db, Partitions: 4,
		RulesFile: rulesFile, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := p.Wait(); err != nil {
			t.Errorf("pipeline stopped with: %v", err)
		}
	}()
	testkit.Eventually(t, 30*time.Second, "the pipeline ready", func() bool { return p.Ready() == nil })
	url := "http://" + p.CollectorAddr() + "/v1/events"
	send := func(id, team string) (int, string) {
		body := fmt.Sprintf(`{"id":%q,"provider":"openai","model":"gpt-4o","usage":{"input_tokens":1000000,"output_tokens":0},"tags":{"team":%q}}`, id, team)
		resp, err := http.Post(url, "application/x-ndjson", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}

	start := time.Now()
	if code, body := send("spike-1", "search"); code != http.StatusAccepted {
		t.Fatalf("spike: %d %s", code, body)
	}
	testkit.Eventually(t, 30*time.Second, "a notification", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	t.Logf("spike accepted by the collector → webhook notified: %s", firstAt.Sub(start).Round(time.Millisecond))
	// Three more evaluations of the rules: still one page.
	after := evaluationsOf(t, reg) + 3
	testkit.Eventually(t, 30*time.Second, "three more evaluations", func() bool { return evaluationsOf(t, reg) >= after })
	mu.Lock()
	if strings.Join(got, "; ") != "firing team-burst search" {
		t.Errorf("notifications = %q, want exactly one firing team-burst for search", got)
	}
	mu.Unlock()

	// $2.50 for team capped, over its $1 limit: soon every event of the team is refused.
	capStart := time.Now()
	if code, body := send("capped-1", "capped"); code != http.StatusAccepted {
		t.Fatalf("first capped event: %d %s", code, body)
	}
	for i := 2; ; i++ {
		code, body := send(fmt.Sprintf("capped-%d", i), "capped")
		if code == http.StatusTooManyRequests {
			// The spend counted by then depends on how many events got in before the cap
			// reached the collector (about a second).
			if !strings.HasPrefix(body, `{"error":"team \"capped\" is over the hard cap of budget \"capped-monthly\": `) ||
				!strings.Contains(body, ` USD spent of 1.000000000000 USD since `) {
				t.Errorf("429 body = %s", body)
			}
			t.Logf("hard cap enforced %s after the spend was accepted", time.Since(capStart).Round(time.Millisecond))
			break
		}
		if code != http.StatusAccepted || i > 3000 {
			t.Fatalf("capped event %d: %d %s", i, code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := send("other-1", "search"); code != http.StatusAccepted {
		t.Errorf("another team is refused: %d %s", code, body)
	}
}

// evaluationsOf returns how many times the alerter of the pipeline registered on reg has
// evaluated its rules.
func evaluationsOf(tb testing.TB, reg *prometheus.Registry) uint64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "tokenmeter_alerter_evaluation_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	tb.Fatal("no tokenmeter_alerter_evaluation_seconds registered")
	return 0
}
