package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// TestStartDashboard serves the dashboard as "tokenmeter run" does, on a free port, over a
// seeded database and an embedded NATS without the alerter's buckets, and stops it with ctx.
func TestStartDashboard(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	nc := natstest.Connect(t, natstest.Start(t, t.TempDir(), -1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	at, done, err := startDashboard(ctx, "127.0.0.1:0", chtest.DSN(), db, nc, dashboardAccess{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/api/v1/spend?by=model&from=2026-11-01&to=2026-11-20&limit=1": `{"by":"model","from":"2026-11-01","to":"2026-11-20","lines":[{"key":"anthropic/claude-sonnet-4-5","events":3,"cost_usd":"6.250000000001","unpriced_events":0}]}`,
		"/api/v1/budgets": `{"budgets":[],"invalid":[]}`,
	} {
		resp, err := http.Get("http://" + at.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strings.TrimSpace(string(body)); resp.StatusCode != 200 || got != want {
			t.Errorf("GET %s: %d %s, want 200 %s", path, resp.StatusCode, got, want)
		}
	}
	if _, _, err := startDashboard(ctx, at.String(), chtest.DSN(), db, nil, dashboardAccess{}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "listen for the dashboard on "+at.String()) {
		t.Errorf("a second dashboard on the same address: err = %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("dashboard stopped with %v", err)
	}
}
