package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// collector answers like the real one: it decodes each body with event.Decode and answers 202
// with the accepted count and the rejections. Its first answer is a 503 with Retry-After.
type collector struct {
	mu                 sync.Mutex
	requests           int
	accepted, rejected int
	refused            []byte   // the body answered with 503
	bodies             [][]byte // the bodies answered with 202
}

func newCollector(tb testing.TB) (*collector, *httptest.Server) {
	tb.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.requests++
		if c.requests == 1 {
			c.refused = body
			w.Header().Set("Retry-After", "1")
			http.Error(w, "stream full", http.StatusServiceUnavailable)
			return
		}
		b, err := event.Decode(body, r.Header.Get("Content-Type"), time.Now(), event.DefaultLimits, 10_000)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.accepted += len(b.Events)
		c.rejected += len(b.Rejected)
		c.bodies = append(c.bodies, body)
		if b.Rejected == nil {
			b.Rejected = []event.Rejection{}
		}
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]any{"accepted": len(b.Events), "rejected": b.Rejected})
	}))
	tb.Cleanup(srv.Close)
	return c, srv
}

func testConfig(tb testing.TB, url string, args ...string) config {
	tb.Helper()
	cfg, err := parseFlags(append([]string{"-url", url}, args...), io.Discard)
	if err != nil {
		tb.Fatalf("parse flags %q: %v", args, err)
	}
	return cfg
}

func TestSendCountsMatch(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"ndjson", "array"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			c, srv := newCollector(t)
			cfg := testConfig(t, srv.URL, "-events", "10500", "-batch", "1000", "-clients", "4",
				"-seed", "3", "-format", format, "-invalid", "0.02")
			now := time.Now()
			rep, err := send(context.Background(), cfg, now, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("send: %v", err)
			}

			// What the same generator says the collector must answer.
			gcfg := cfg.gen
			gcfg.Now = now
			g := loadgen.New(gcfg)
			var want loadgen.Tally
			for range 10_500 {
				want.Add(g.Next())
			}
			if want.Invalid == 0 || want.Duplicates == 0 {
				t.Fatalf("the run holds %d invalid and %d duplicate events; the test needs both", want.Invalid, want.Duplicates)
			}

			c.mu.Lock()
			defer c.mu.Unlock()
			for _, f := range []struct {
				name      string
				got, want int
			}{
				{"events sent", rep.sent, 10_500},
				{"accepted", rep.accepted, want.Accepted()},
				{"rejected", rep.rejected, want.Rejected()},
				{"expected accepted", rep.wantAccepted, want.Accepted()},
				{"expected rejected", rep.wantRejected, want.Rejected()},
				{"collector accepted", c.accepted, want.Accepted()},
				{"collector rejected", c.rejected, want.Rejected()},
				{"HTTP errors", rep.httpErrors, 0},
				{"retries", rep.retries, 1},
				{"requests", c.requests, 12},
				{"latencies", len(rep.latencies), 12},
			} {
				if f.got != f.want {
					t.Errorf("%s: got %d, want %d", f.name, f.got, f.want)
				}
			}
			retried := 0
			for _, b := range c.bodies {
				if bytes.Equal(b, c.refused) {
					retried++
				}
			}
			if retried != 1 {
				t.Errorf("the body refused with 503 arrived %d times afterwards, want once", retried)
			}
		})
	}
}

func TestRunPrintsReport(t *testing.T) {
	t.Parallel()
	c, srv := newCollector(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-url", srv.URL, "-events", "3000", "-batch", "500", "-clients", "2"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, &stderr)
	}
	out := stdout.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, want := range []string{
		`(?m)^events sent +3000 *$`,
		`(?m)^accepted +` + strconv.Itoa(c.accepted) + ` +expected ` + strconv.Itoa(c.accepted) + `$`,
		`(?m)^rejected +` + strconv.Itoa(c.rejected) + ` +expected ` + strconv.Itoa(c.rejected) + `$`,
		`(?m)^HTTP errors +0 +0 events not delivered$`,
		`(?m)^retries \(429/503\) +1 *$`,
		`(?m)^events/s +\d+ *$`,
		`(?m)^latency p50 +[0-9.]+[µm]?s +7 requests$`,
		`(?m)^latency p99 +[0-9.]+[µm]?s *$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("report does not match %s:\n%s", want, out)
		}
	}
}

func TestRate(t *testing.T) {
	t.Parallel()
	_, srv := newCollector(t)
	// The first request waits out its Retry-After, so pace the rest after it: 4 batches at
	// 2000 events/s are released at 0, 0.5, 1 and 1.5 s.
	cfg := testConfig(t, srv.URL, "-events", "4000", "-batch", "1000", "-rate", "2000", "-clients", "2")
	rep, err := send(context.Background(), cfg, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if rep.sent != 4000 || rep.elapsed < 1500*time.Millisecond {
		t.Errorf("sent %d events in %s, want 4000 in at least 1.5s", rep.sent, rep.elapsed)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	c, srv := newCollector(t)
	cfg := testConfig(t, srv.URL, "-events", "0", "-duration", "1500ms", "-batch", "100", "-rate", "2000")
	rep, err := send(context.Background(), cfg, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rep.sent == 0 || rep.sent > 3100 || rep.sent != c.accepted+c.rejected || rep.httpErrors != 0 {
		t.Errorf("sent %d events (collector saw %d, %d HTTP errors); want about 3000, all answered",
			rep.sent, c.accepted+c.rejected, rep.httpErrors)
	}
}

func TestFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-format", "xml"}, `-format "xml" is not ndjson or array`},
		{[]string{"-events", "0"}, "-events (0) and -duration (0s) must not be negative, and one of them positive"},
		{[]string{"-batch", "0", "-clients", "0"}, "-batch (0) must be at least 1\n-clients (0) must be at least 1"},
		{[]string{"-invalid", "2"}, "invalid share (2) must be within [0, 1]"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
	} {
		_, err := parseFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseFlags(%q) = %v, want an error saying %q", c.args, err, c.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{"": time.Second, "0": 0, "3": 3 * time.Second, "soon": time.Second,
		time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat): 0} {
		if got := retryAfter(in); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
