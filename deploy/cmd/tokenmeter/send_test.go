package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/collector/collect"
	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// TestSend sends 3,000 generated events in bodies of 1,000 to the real collector on embedded
// JetStream: every valid event (duplicates included) is accepted and stored in USAGE_RAW,
// every invalid one rejected and printed, and progress comes on stderr as the injected clock
// says — one line at 2 s, then the final line.
func TestSend(t *testing.T) {
	ns := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, ns)
	js := streamtest.Streams(t, nc, nil)
	c, err := collect.New(collect.Config{}, nc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)

	const seed = 42
	cfg := loadgen.DefaultConfig(time.Now().UTC())
	cfg.Seed = seed
	gen := loadgen.New(cfg)
	wantAccepted, wantRejected := 0, 0
	for range 3000 {
		if gen.Next().Kind == loadgen.Invalid {
			wantRejected++
		} else {
			wantAccepted++
		}
	}
	if wantRejected == 0 || wantAccepted == 0 {
		t.Fatalf("seed %d generates %d valid, %d invalid events: the test needs both", seed, wantAccepted, wantRejected)
	}

	var stdout, stderr bytes.Buffer
	// The clock moves 0.5 s per reading: the start, then one reading per body, then Finish.
	err = send(context.Background(), sendConfig{URL: srv.URL + "/v1/events", N: 3000, Batch: 1000, Seed: seed}, &stdout, &stderr, ticker(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	wantProgress := "send: 2000/3000 events (66%), 2000 events/s, ETA 1s\n" +
		"send: 3000/3000 events in 2s, 1500 events/s\n"
	if stderr.String() != wantProgress {
		t.Errorf("progress:\n%s\nwant:\n%s", stderr.String(), wantProgress)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if got, want := lines[len(lines)-1], fmt.Sprintf("sent 3000 events: %d accepted, %d rejected (seed 42)", wantAccepted, wantRejected); got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
	if got := len(lines) - 1; got != wantRejected {
		t.Errorf("%d rejection lines, want %d:\n%s", got, wantRejected, stdout.String())
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "rejected ") {
			t.Errorf("line %q is not a rejection", l)
		}
	}
	stored := 0
	for _, m := range streamtest.Messages(t, js, stream.Raw) {
		stored += len(m.Rows)
	}
	if stored != wantAccepted {
		t.Errorf("USAGE_RAW holds %d events, want the %d accepted", stored, wantAccepted)
	}

	// -q: the same run prints no progress at all.
	stdout.Reset()
	stderr.Reset()
	err = send(context.Background(), sendConfig{URL: srv.URL + "/v1/events", N: 10, Batch: 3, Seed: seed, Quiet: true}, &stdout, &stderr, ticker(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if stderr.Len() != 0 {
		t.Errorf("-q printed progress:\n%s", stderr.String())
	}
}

// Bad flags are refused, each named; a collector that refuses a body stops the run and the
// error says how far it got.
func TestSendErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := send(context.Background(), sendConfig{URL: "localhost:8080", N: 0, Batch: 10001}, &stdout, &stderr, time.Now)
	want := `-url "localhost:8080": want an http or https URL` + "\n-n (0) must be at least 1\n-batch (10001) must be between 1 and 10000"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want\n%s", err, want)
	}
	if err := runSend(context.Background(), []string{"-n", "5", "extra"}); err == nil || err.Error() != `unexpected arguments ["extra"]` {
		t.Errorf("extra argument: err = %v", err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	err = send(context.Background(), sendConfig{URL: srv.URL + "/v1/events", N: 5, Batch: 5, Seed: 1}, &stdout, &stderr, time.Now)
	if err == nil || !strings.HasPrefix(err.Error(), "after 0 of 5 events: post events: 404 Not Found: ") {
		t.Errorf("refused body: err = %v", err)
	}
}
