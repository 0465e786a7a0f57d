package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

func accessServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	conn := chtest.Conn(t)
	cfg.Database = summarytest.Seed(t, conn, summarytest.Events())
	cfg.Now = summarytest.Now
	s, err := New(cfg, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

// do sends GET path to srv with the given Host header and Authorization (none when "").
func do(t *testing.T, srv *httptest.Server, host, path, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(body))
}

const spendPath = "/api/v1/spend?by=team&from=2026-11-01&to=2026-11-20&limit=1"

// TestHostCheckDefeatsDNSRebinding performs the attack: a page of evil.example, whose name
// the attacker re-points at the dashboard's address, asks for the spend. The request carries
// "Host: evil.example" and must be refused before anything is read; localhost, IP addresses
// and the configured names are served.
func TestHostCheckDefeatsDNSRebinding(t *testing.T) {
	srv := accessServer(t, Config{Hosts: []string{"dash.example.com"}})
	port := srv.Listener.Addr().String()[strings.LastIndexByte(srv.Listener.Addr().String(), ':'):]
	for _, host := range []string{"evil.example" + port, "evil.example", "dash.example.com.evil.example", "localhost.evil.example" + port, "127.0.0.1.nip.io"} {
		for _, path := range []string{spendPath, "/"} {
			status, _, body := do(t, srv, host, path, "")
			if want := `{"error":"this dashboard does not serve host \"` + host + `\""}`; status != http.StatusMisdirectedRequest || body != want {
				t.Errorf("Host %s GET %s: %d %s, want 421 %s", host, path, status, body, want)
			}
		}
	}
	for _, host := range []string{"", "localhost" + port, "LOCALHOST", "app.localhost" + port, "127.0.0.1" + port, "[::1]" + port, "10.1.2.3", "dash.example.com", "Dash.Example.Com.:443"} {
		status, _, body := do(t, srv, host, spendPath, "")
		if want := `{"by":"team","from":"2026-11-01","to":"2026-11-20","lines":[{"key":"support","events":3,"cost_usd":"6.250000000001","unpriced_events":0}]}`; status != http.StatusOK || body != want {
			t.Errorf("Host %q: %d %s, want 200 %s", host, status, body, want)
		}
	}
}

// TestTokenIsRequiredWhenSet: with a token, a request without it or with a wrong one is
// answered 401 and reads nothing; the token is accepted as a bearer token or as a basic-auth
// password, which a browser asks for after the 401's WWW-Authenticate.
func TestTokenIsRequiredWhenSet(t *testing.T) {
	srv := accessServer(t, Config{Token: "correct horse"})
	basic := func(user, pass string) string {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		r.SetBasicAuth(user, pass)
		return r.Header.Get("Authorization")
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer correct horsE", "Bearer ", basic("admin", "wrong"), "Basic !!!", "correct horse"} {
		status, h, body := do(t, srv, "", spendPath, auth)
		if status != http.StatusUnauthorized || body != `{"error":"authentication required"}` ||
			h.Get("WWW-Authenticate") != `Basic realm="tokenmeter dashboard", charset="UTF-8"` {
			t.Errorf("Authorization %q: %d %v %s, want 401 with a basic challenge", auth, status, h, body)
		}
	}
	for _, auth := range []string{"Bearer correct horse", "bearer correct horse", basic("", "correct horse"), basic("finance", "correct horse")} {
		if status, _, body := do(t, srv, "", spendPath, auth); status != http.StatusOK || !strings.HasPrefix(body, `{"by":"team"`) {
			t.Errorf("Authorization %q: %d %s, want 200", auth, status, body)
		}
	}
	// The host check comes first: a rebinding page gets 421 even with the token.
	if status, _, _ := do(t, srv, "evil.example", spendPath, "Bearer correct horse"); status != http.StatusMisdirectedRequest {
		t.Errorf("evil host with the token: %d, want 421", status)
	}
}

func TestConfigRefusesBadHosts(t *testing.T) {
	_, err := New(Config{Database: "tokenmeter", Hosts: []string{"ok.example", "dash.example:8090", "", "http://x"}}, nil, nil)
	want := "dashboard config: " + `host "dash.example:8090": want a host name without port, e.g. dashboard.example.com` + "\n" +
		`host "": want a host name without port, e.g. dashboard.example.com` + "\n" +
		`host "http://x": want a host name without port, e.g. dashboard.example.com`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}
