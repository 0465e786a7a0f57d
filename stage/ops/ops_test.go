package ops

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/testkit"
)

func get(t testing.TB, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	events := prometheus.NewCounter(prometheus.CounterOpts{Name: "tokenmeter_test_events_total", Help: "Events seen by the test."})
	reg.MustRegister(events)
	events.Add(3)

	var natsErr, chErr error
	mux := http.NewServeMux()
	Register(mux, reg,
		func() error { return nil },
		func() error { return natsErr },
		func() error { return chErr },
	)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	if code, body := get(t, srv, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}

	natsErr = errors.New("nats: not connected")
	chErr = errors.New("clickhouse: dial tcp 127.0.0.1:9000: connection refused")
	if code, body := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable ||
		body != "nats: not connected\nclickhouse: dial tcp 127.0.0.1:9000: connection refused\n" {
		t.Errorf("/readyz with two failing checks = %d %q, want 503 with both messages", code, body)
	}
	chErr = nil
	if code, body := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable || body != "nats: not connected\n" {
		t.Errorf("/readyz with one failing check = %d %q, want 503 \"nats: not connected\\n\"", code, body)
	}
	natsErr = nil
	if code, body := get(t, srv, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz with all checks passing = %d %q, want 200 \"ready\\n\"", code, body)
	}

	code, body := get(t, srv, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, "\ntokenmeter_test_events_total 3\n") {
		t.Errorf("/metrics = %d, want 200 with tokenmeter_test_events_total 3:\n%s", code, body)
	}

	resp, err := srv.Client().Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
	}
}

func TestRegisterNoChecks(t *testing.T) {
	mux := http.NewServeMux()
	Register(mux, prometheus.NewRegistry())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	if code, body := get(t, srv, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz without checks = %d %q, want 200", code, body)
	}
}

// Serve answers on its address until stopped, and reports a failure to listen.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	failed := make(chan error, 1)
	// The address is taken: Serve must say so.
	stopBusy := Serve(addr, http.NewServeMux(), func(err error) { failed <- err })
	select {
	case err := <-failed:
		if !strings.Contains(err.Error(), "serve ops endpoints on "+addr) {
			t.Errorf("failure = %v, want it to name the address", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve on a taken address reported nothing")
	}
	stopBusy()
	ln.Close()

	mux := http.NewServeMux()
	Register(mux, prometheus.NewRegistry())
	stop := Serve(addr, mux, func(err error) { t.Errorf("Serve failed: %v", err) })
	var resp *http.Response
	testkit.Eventually(t, 10*time.Second, "the ops server answering", func() bool {
		resp, err = http.Get("http://" + addr + "/healthz")
		return err == nil
	})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("the server still answers after stop")
	}
}
