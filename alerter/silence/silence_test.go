package silence

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func openStore(t testing.TB) (*Store, *clock, jetstream.JetStream) {
	t.Helper()
	s := natstest.Start(t, t.TempDir(), -1)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: t0}
	st, err := Open(context.Background(), js, jetstream.FileStorage, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return st, c, js
}

func TestValidate(t *testing.T) {
	ok := Silence{Matchers: map[string]string{"team": "search"}, StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "alice"}
	for _, c := range []struct {
		name string
		edit func(*Silence)
		want string
	}{
		{"valid", func(*Silence) {}, ""},
		{"no matchers", func(s *Silence) { s.Matchers = nil }, "matchers: missing (a silence must match something)"},
		{"bad label name", func(s *Silence) { s.Matchers = map[string]string{"1team": "x"} }, `matchers: "1team" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`},
		{"bidi override in a value", func(s *Silence) { s.Matchers = map[string]string{"team": "a\u202eb"} }, "matchers.team: contains a bidirectional control character (U+202E)"},
		{"ends before it starts", func(s *Silence) { s.EndsAt = t0.Add(-time.Minute) }, "ends_at 2026-12-06T09:59:00Z is not after starts_at 2026-12-06T10:00:00Z; ends_at 2026-12-06T09:59:00Z is in the past"},
		{"longer than a year", func(s *Silence) { s.EndsAt = t0.Add(400 * 24 * time.Hour) }, "the silence lasts 9600h0m0s, more than 8784h0m0s"},
		{"nobody made it", func(s *Silence) { s.CreatedBy = " " }, "created_by: missing (who silenced it)"},
		{"a novel as comment", func(s *Silence) { s.Comment = strings.Repeat("x", 1025) }, "comment: 1025 bytes, more than 1024"},
		{"invalid UTF-8", func(s *Silence) { s.Comment = "\xff" }, "comment: not valid UTF-8"},
	} {
		s := ok
		s.Matchers = map[string]string{"team": "search"}
		c.edit(&s)
		got := ""
		if err := s.Validate(t0); err != nil {
			got = strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// A silence made, listed, read, watched and expired; its state follows the clock; a restart
// (a new store on the same bucket) keeps it; an expired one is deleted after 5 days.
func TestStoreLifecycle(t *testing.T) {
	st, c, js := openStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen [][]Silence
	if err := st.Watch(ctx, func(all []Silence) { mu.Lock(); seen = append(seen, all); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	s, err := st.Create(ctx, Silence{Matchers: map[string]string{"team": "search"}, StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(2 * time.Hour), CreatedBy: "alice", Comment: "load test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ID) != 32 || !s.StartsAt.Equal(t0) || s.State(t0) != "active" {
		t.Fatalf("created %+v: want a 32-digit id, started now (not in the past), active", s)
	}
	testkit.Eventually(t, 10*time.Second, "the watch to see the silence", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && len(seen[len(seen)-1]) == 1 && seen[len(seen)-1][0].ID == s.ID
	})
	again, err := Open(ctx, js, jetstream.FileStorage, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Get(ctx, s.ID); err != nil || got.Comment != "load test" || got.Matchers["team"] != "search" {
		t.Fatalf("after a restart: %+v, %v", got, err)
	}
	c.Add(time.Minute)
	exp, err := st.Expire(ctx, s.ID)
	if err != nil || exp.State(c.Now()) != "expired" || !exp.EndsAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Expire = %+v, %v", exp, err)
	}
	testkit.Eventually(t, 10*time.Second, "the watch to see it expired", func() bool {
		mu.Lock()
		defer mu.Unlock()
		l := seen[len(seen)-1]
		return len(l) == 1 && l[0].EndsAt.Equal(t0.Add(time.Minute))
	})
	if _, err := st.Create(ctx, Silence{ID: s.ID, Matchers: map[string]string{"team": "x"}, StartsAt: c.Now(), EndsAt: c.Now().Add(time.Hour), CreatedBy: "bob"}); err == nil ||
		err.Error() != "silence "+s.ID+" has expired; create a new one" {
		t.Errorf("update of an expired silence: %v", err)
	}
	if _, err := st.Get(ctx, "../x"); err == nil || err.Error() != "no such silence: ../x" {
		t.Errorf("Get of a hostile id: %v", err)
	}
	c.Add(KeepExpiredFor + time.Minute)
	if all, err := st.List(ctx); err != nil || len(all) != 0 {
		t.Errorf("after 5 days: %+v, %v; want it deleted", all, err)
	}
}

// The API answers as Alertmanager's v2 does: POST gives the id, GET lists with the state,
// DELETE expires; regex matchers, unknown fields and oversized bodies are refused with the
// reason.
func TestAPI(t *testing.T) {
	st, _, _ := openStore(t)
	srv := httptest.NewServer(Handler(st, ""))
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	code, body := do("POST", "/api/v2/silences", `{"matchers":[{"name":"team","value":"search","isRegex":false,"isEqual":true},{"name":"alertname","value":"team_spike","isRegex":false}],
		"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":"alice","comment":"load test"}`)
	if code != 200 || !strings.HasPrefix(body, `{"silenceID":"`) {
		t.Fatalf("POST = %d %s", code, body)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(body, `{"silenceID":"`), `"}`)
	want := `[{"id":"` + id + `","matchers":[{"name":"alertname","value":"team_spike","isRegex":false,"isEqual":true},{"name":"team","value":"search","isRegex":false,"isEqual":true}],` +
		`"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":"alice","comment":"load test","status":{"state":"active"},"updatedAt":"2026-12-06T10:00:00Z"}]`
	if code, body := do("GET", "/api/v2/silences", ""); code != 200 || body != want {
		t.Errorf("GET = %d %s\nwant %s", code, body, want)
	}
	if code, body := do("GET", "/api/v2/silence/"+id, ""); code != 200 || "["+body+"]" != want {
		t.Errorf("GET one = %d %s", code, body)
	}
	if code, body := do("DELETE", "/api/v2/silence/"+id, ""); code != 200 || body != "" {
		t.Errorf("DELETE = %d %s", code, body)
	}
	if _, body := do("GET", "/api/v2/silence/"+id, ""); !strings.Contains(body, `"status":{"state":"expired"}`) {
		t.Errorf("after DELETE: %s", body)
	}
	for _, c := range []struct{ body, want string }{
		{`{"matchers":[{"name":"team","value":"s.*","isRegex":true}],"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":"a"}`,
			`"matchers[0] (team): only equality matchers are supported (isRegex false, isEqual true)"`},
		{`{"matchers":[{"name":"team","value":"s","isEqual":false}],"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":"a"}`,
			`"matchers[0] (team): only equality matchers are supported (isRegex false, isEqual true)"`},
		{`{"matchers":[],"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":"a","admin":true}`,
			`"decode the silence: json: unknown field \"admin\""`},
		{`{"matchers":[],"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":""}`,
			`"matchers: missing (a silence must match something); created_by: missing (who silenced it)"`},
		{`{"matchers":[{"name":"team","value":"` + strings.Repeat("x", MaxBodyBytes) + `"}]}`,
			`"decode the silence: http: request body too large"`},
	} {
		if code, body := do("POST", "/api/v2/silences", c.body); code != 400 || body != c.want {
			t.Errorf("POST %.60s… = %d %s, want 400 %s", c.body, code, body, c.want)
		}
	}
	if code, body := do("DELETE", "/api/v2/silence/0123456789abcdef0123456789abcdef", ""); code != 404 || body != `"no such silence: 0123456789abcdef0123456789abcdef"` {
		t.Errorf("DELETE of an unknown id = %d %s", code, body)
	}
}

// With a token, making and expiring silences needs it; reading does not.
func TestAPIToken(t *testing.T) {
	st, _, _ := openStore(t)
	h := Handler(st, "s3cret")
	post := func(auth string) (int, string) {
		r := httptest.NewRequest(http.MethodPost, "/api/v2/silences", strings.NewReader(`{"matchers":[{"name":"team","value":"search"}],"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":"a"}`))
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	for _, auth := range []string{"", "Bearer wrong", "s3cret", "Basic s3cret"} {
		if code, body := post(auth); code != 401 || body != `"a silence needs the alerter's silence token (Authorization: Bearer …)"` {
			t.Errorf("POST with %q = %d %s, want 401", auth, code, body)
		}
	}
	if code, body := post("Bearer s3cret"); code != 200 || !strings.HasPrefix(body, `{"silenceID":"`) {
		t.Errorf("POST with the token = %d %s", code, body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v2/silences", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"createdBy":"a"`) {
		t.Errorf("GET without the token = %d %s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/api/v2/silence/0123456789abcdef0123456789abcdef", nil))
	if rec.Code != 401 {
		t.Errorf("DELETE without the token = %d", rec.Code)
	}
}

// FuzzPostSilence: whatever body is posted, the API answers 200 with an id, or 400/404 with a
// reason; never 500, never a panic; and what it stores validates.
func FuzzPostSilence(f *testing.F) {
	f.Add(`{"matchers":[{"name":"team","value":"search"}],"startsAt":"2026-12-06T10:00:00Z","endsAt":"2026-12-06T12:00:00Z","createdBy":"a"}`)
	f.Add(`{"id":"0123456789abcdef0123456789abcdef","matchers":[{"name":"team","value":"x"}],"endsAt":"2030-01-01T00:00:00Z","createdBy":"a"}`)
	f.Add(`{"matchers":[{"name":"a","value":"\u202e"},{"name":"a","value":"b"}]}`)
	f.Add(`[]`)
	st, _, _ := openStore(f)
	h := Handler(st, "")
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v2/silences", strings.NewReader(body)))
		switch rec.Code {
		case http.StatusOK:
			id := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(rec.Body.String()), `{"silenceID":"`), `"}`)
			s, err := st.Get(context.Background(), id)
			if err != nil {
				t.Fatalf("stored %q: %v", id, err)
			}
			if err := s.Validate(s.UpdatedAt); err != nil {
				t.Fatalf("stored an invalid silence %+v: %v", s, err)
			}
		case http.StatusBadRequest, http.StatusNotFound:
			if !strings.HasPrefix(rec.Body.String(), `"`) {
				t.Fatalf("error answer %q is not a JSON string", rec.Body.String())
			}
		default:
			t.Fatalf("POST %q = %d %s", body, rec.Code, rec.Body.String())
		}
	})
}
