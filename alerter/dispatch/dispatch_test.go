package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/notify"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

type clock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(s int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t0.Add(time.Duration(s) * time.Second)
}
func (c *clock) Sleep(_ context.Context, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
}

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// hook is a webhook receiver that records each notification as "status: name/status, …".
type hook struct {
	mu     sync.Mutex
	got    []string
	status int
	srv    *httptest.Server
}

func newHook(t *testing.T) *hook {
	h := &hook{status: http.StatusOK}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Status string `json:"status"`
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			t.Errorf("decode webhook: %v", err)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.status != http.StatusOK {
			w.WriteHeader(h.status)
			return
		}
		var parts []string
		for _, a := range p.Alerts {
			parts = append(parts, a.Labels["alertname"]+"/"+a.Status)
		}
		sort.Strings(parts)
		h.got = append(h.got, p.Status+": "+strings.Join(parts, ","))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) take() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := strings.Join(h.got, " | ")
	h.got = nil
	return s
}

func alertOf(name, status string) notify.Alert {
	return notify.Alert{Status: status, Labels: map[string]string{"alertname": name, "team": "search"}, Fingerprint: "fp-" + name, StartsAt: t0}
}

func setup(t *testing.T, hooks ...*hook) (*Dispatcher, *clock, *[]string) {
	c := &clock{t: t0}
	var rs []Receiver
	for i, h := range hooks {
		rs = append(rs, Receiver{Name: fmt.Sprintf("r%d", i), Notifier: &notify.Webhook{URL: h.srv.URL}})
	}
	var sent []string
	var mu sync.Mutex
	d := New(Config{
		Route:     rules.Route{GroupBy: []string{"team"}, GroupWait: 3 * time.Second, GroupInterval: time.Minute, RepeatInterval: time.Hour},
		Receivers: rs, Now: c.Now, Sleep: c.Sleep, BreakerFailures: 4, BreakerOpen: time.Hour,
		OnSent: func(r string, as []notify.Alert, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			for _, a := range as {
				sent = append(sent, r+" "+a.Fingerprint+" "+a.Status)
			}
		},
	})
	return d, c, &sent
}

func (d *Dispatcher) flushAt(c *clock, s int) {
	c.Set(s)
	d.Flush(context.Background())
	d.Wait()
}

func TestGroupWaitIntervalRepeatAndResolve(t *testing.T) {
	h := newHook(t)
	d, c, sent := setup(t, h)
	d.Update(alertOf("a", notify.StatusFiring))
	d.flushAt(c, 1)
	c.Set(2)
	d.Update(alertOf("b", notify.StatusFiring))
	d.flushAt(c, 2)
	if got := h.take(); got != "" {
		t.Fatalf("before group_wait: %q", got)
	}
	d.flushAt(c, 3) // group_wait of the group created at 0s
	if got, want := h.take(), "firing: a/firing,b/firing"; got != want {
		t.Fatalf("after group_wait: %q, want %q", got, want)
	}
	c.Set(10)
	d.Update(alertOf("c", notify.StatusFiring))
	d.flushAt(c, 10)
	d.flushAt(c, 62)
	if got := h.take(); got != "" {
		t.Fatalf("a change waits for group_interval: %q", got)
	}
	d.flushAt(c, 63)
	if got, want := h.take(), "firing: a/firing,b/firing,c/firing"; got != want {
		t.Fatalf("after group_interval: %q, want %q", got, want)
	}
	for s := 64; s < 3600; s += 60 {
		d.flushAt(c, s)
	}
	if got := h.take(); got != "" {
		t.Fatalf("nothing changed within repeat_interval: %q", got)
	}
	d.flushAt(c, 3663)
	if got, want := h.take(), "firing: a/firing,b/firing,c/firing"; got != want {
		t.Fatalf("repeat_interval: %q, want %q", got, want)
	}
	c.Set(3700)
	d.Update(alertOf("a", notify.StatusResolved))
	d.flushAt(c, 3723)
	if got, want := h.take(), "firing: a/resolved,b/firing,c/firing"; got != want {
		t.Fatalf("resolve: %q, want %q", got, want)
	}
	if d.Holds("fp-a") || !d.Holds("fp-b") {
		t.Errorf("after its resolve was sent, fp-a is still held (%v) or fp-b is not (%v)", d.Holds("fp-a"), d.Holds("fp-b"))
	}
	if n := len(*sent); n != 11 {
		t.Errorf("OnSent reported %d alerts, want 11 (2+3+3+3): %v", n, *sent)
	}
}

func TestSilenceHoldsBackUntilItEnds(t *testing.T) {
	h := newHook(t)
	d, c, _ := setup(t, h)
	d.SetSilences([]rules.Silence{{Matchers: map[string]string{"team": "search"}, EndsAt: t0.Add(10 * time.Minute)}})
	d.Update(alertOf("a", notify.StatusFiring))
	for s := 3; s < 600; s += 60 {
		d.flushAt(c, s)
	}
	if got := h.take(); got != "" {
		t.Fatalf("silenced: %q", got)
	}
	d.flushAt(c, 603)
	if got, want := h.take(), "firing: a/firing"; got != want {
		t.Fatalf("after the silence: %q, want %q", got, want)
	}
	// Resolved while silenced and never notified: nothing to send.
	d.SetSilences([]rules.Silence{{Matchers: map[string]string{"alertname": "b"}, EndsAt: t0.Add(time.Hour)}})
	c.Set(610)
	d.Update(alertOf("b", notify.StatusFiring))
	c.Set(620)
	d.Update(alertOf("b", notify.StatusResolved))
	d.flushAt(c, 663)
	if got := h.take(); got != "" {
		t.Fatalf("resolved silenced alert: %q", got)
	}
	if d.Holds("fp-b") {
		t.Error("fp-b still held")
	}
}

func TestReceiverDownDoesNotBlockOthersAndRetriesLater(t *testing.T) {
	down, up := newHook(t), newHook(t)
	down.status = http.StatusServiceUnavailable
	d, c, sent := setup(t, down, up)
	d.Update(alertOf("a", notify.StatusFiring))
	d.flushAt(c, 3)
	if got, want := up.take(), "firing: a/firing"; got != want {
		t.Fatalf("healthy receiver: %q, want %q", got, want)
	}
	if got := fmt.Sprint(c.sleeps); got != "[1s 2s]" {
		t.Errorf("back-off sleeps = %s, want [1s 2s] (3 attempts)", got)
	}
	if got := strings.Join(*sent, ","); got != "r1 fp-a firing" {
		t.Errorf("sent = %s", got)
	}
	d.flushAt(c, 63) // 4th failure opens the breaker (BreakerFailures 4): the rest fail fast
	d.flushAt(c, 123)
	down.mu.Lock()
	down.status = http.StatusOK
	down.mu.Unlock()
	d.flushAt(c, 183)
	if got := down.take(); got != "" {
		t.Errorf("breaker open for an hour, yet sent: %q", got)
	}
	if got := up.take(); got != "" {
		t.Errorf("the healthy receiver was notified again: %q", got)
	}
}

func TestRestoreDoesNotNotifyAgain(t *testing.T) {
	h := newHook(t)
	d, c, _ := setup(t, h)
	d.Restore(alertOf("a", notify.StatusFiring), map[string]Sent{"r0": {Status: notify.StatusFiring, At: t0}})
	d.Restore(alertOf("b", notify.StatusResolved), map[string]Sent{"r0": {Status: notify.StatusFiring, At: t0}})
	d.flushAt(c, 3)
	if got, want := h.take(), "firing: a/firing,b/resolved"; got != want {
		t.Fatalf("after restore: %q, want %q (the owed resolve of b, a only as context)", got, want)
	}
	d.flushAt(c, 63)
	if got := h.take(); got != "" {
		t.Fatalf("a was already notified: %q", got)
	}
}

// NextFlush says when a group may next send, so that the alerter can flush at group_wait
// rather than at the evaluation after it.
func TestNextFlush(t *testing.T) {
	h := newHook(t)
	d, c, _ := setup(t, h)
	if got := d.NextFlush(); !got.IsZero() {
		t.Fatalf("no group: NextFlush = %s, want zero", got)
	}
	c.Set(1)
	d.Update(alertOf("a", notify.StatusFiring))
	if got, want := d.NextFlush(), t0.Add(4*time.Second); !got.Equal(want) {
		t.Fatalf("a new group: NextFlush = %s, want group_wait after it, %s", got, want)
	}
	d.flushAt(c, 4)
	if got, want := h.take(), "firing: a/firing"; got != want {
		t.Fatalf("at group_wait: %q, want %q", got, want)
	}
	if got, want := d.NextFlush(), t0.Add(64*time.Second); !got.Equal(want) {
		t.Fatalf("after a send: NextFlush = %s, want group_interval later, %s", got, want)
	}
}
