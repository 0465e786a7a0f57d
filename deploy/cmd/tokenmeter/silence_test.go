package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/alerter/silence"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// `tokenmeter silence add`, `list` and `expire` against the alerter's API on a real KV bucket.
func TestSilenceCommand(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	st, err := silence.Open(context.Background(), js, jetstream.FileStorage, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(silence.Handler(st, "s3cret"))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENMETER_SILENCE_TOKEN_FILE", tokenFile)
	ctx := context.Background()
	var out bytes.Buffer
	if err := runSilence(ctx, []string{"add", "-alerter", srv.URL, "-token-file", "", "-match", "team=search"}, &out); err == nil ||
		err.Error() != `the alerter answered 401 Unauthorized: a silence needs the alerter's silence token (Authorization: Bearer …)` {
		t.Fatalf("without the token: %v", err)
	}
	if err := runSilence(ctx, []string{"add", "-alerter", srv.URL, "-match", "team=search", "-match", "alertname=team_spike",
		"-for", "90m", "-by", "alice", "-comment", "load test"}, &out); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out.String())
	if len(id) != 32 {
		t.Fatalf("add printed %q, want the silence id", id)
	}
	got, err := st.Get(ctx, id)
	if err != nil || got.Matchers["team"] != "search" || got.Matchers["alertname"] != "team_spike" || got.CreatedBy != "alice" ||
		got.Comment != "load test" || got.EndsAt.Sub(got.StartsAt) < 89*time.Minute {
		t.Fatalf("stored %+v, %v", got, err)
	}
	out.Reset()
	if err := runSilence(ctx, []string{"list", "-alerter", srv.URL}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], id+"  active  alertname=team_spike,team=search  ") ||
		!strings.HasSuffix(lines[1], "  alice  load test") {
		t.Fatalf("list:\n%s", out.String())
	}
	out.Reset()
	if err := runSilence(ctx, []string{"expire", "-alerter", srv.URL, id}, &out); err != nil || out.String() != "expired "+id+"\n" {
		t.Fatalf("expire: %q, %v", out.String(), err)
	}
	out.Reset()
	if err := runSilence(ctx, []string{"list", "-alerter", srv.URL}, &out); err != nil || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("list after expire: %q, %v; want the header only", out.String(), err)
	}
	out.Reset()
	if err := runSilence(ctx, []string{"list", "-all", "-alerter", srv.URL}, &out); err != nil || !strings.Contains(out.String(), id+"  expired") {
		t.Fatalf("list -all: %q, %v", out.String(), err)
	}
	// The API's reasons reach the user.
	err = runSilence(ctx, []string{"add", "-alerter", srv.URL, "-match", "1bad=x", "-by", "alice"}, &out)
	if err == nil || err.Error() != `the alerter answered 400 Bad Request: matchers: "1bad" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)` {
		t.Errorf("bad label: %v", err)
	}
	if err := runSilence(ctx, []string{"add", "-alerter", srv.URL}, &out); err == nil || err.Error() != "-match: at least one label=value" {
		t.Errorf("no matcher: %v", err)
	}
}
