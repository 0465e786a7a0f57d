package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestDashboardAccessFlags: -host and -token-file reach the dashboard: a foreign Host is
// refused, a request without the token too, and one with both is served.
func TestDashboardAccessFlags(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	at, done, err := startDashboard(ctx, "127.0.0.1:0", chtest.DSN(), db, nil, dashboardAccess{hosts: "dash.example, other.example", tokenFile: tokenFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(host, token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+at.String()+"/api/v1/budgets", nil)
		req.Host = host
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		host, token string
		want        int
	}{{"evil.example", "s3cret", 421}, {"dash.example", "", 401}, {"dash.example", "wrong", 401}, {"dash.example", "s3cret", 200}, {"other.example", "s3cret", 200}, {"localhost", "s3cret", 200}} {
		if got := get(c.host, c.token); got != c.want {
			t.Errorf("Host %s token %q: %d, want %d", c.host, c.token, got, c.want)
		}
	}
	cancel()
	<-done

	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	for file, want := range map[string]string{empty: "dashboard token: " + empty + " is empty", filepath.Join(dir, "none"): "no such file"} {
		if _, _, err := startDashboard(context.Background(), "127.0.0.1:0", chtest.DSN(), db, nil, dashboardAccess{tokenFile: file}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token file %s: err = %v, want %q", file, err, want)
		}
	}
}
