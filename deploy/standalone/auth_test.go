package standalone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/collector/emit"
	"github.com/tokenmeter/tokenmeter/deploy/dashboard"
	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/deploy/reconcile"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// TestIdentities runs the pipeline with its NATS listener on and checks each identity over
// TCP: an anonymous client is refused; an emitter added while it runs is admitted, its events
// reach ClickHouse charged to the team its binding gives it whatever team they name, and it
// can publish nothing else — not another emitter's subject, nor the collector's; reconcile
// and the dashboard read what they need with their own keys. Every stage runs as its own role meanwhile, and the server
// refuses none of them anything (the pipeline logs each refusal). An anonymous HTTP report of
// one of the emitter's calls, sent first with another team, is displaced by the emitter's:
// the spend is billing's alone, and usage_conflicts records the forged report.
func TestIdentities(t *testing.T) {
	conn := openClickHouse(t)
	db := freshDatabase(t, conn)
	ctx, cancel := context.WithCancel(context.Background())
	var logs testkit.SyncBuffer
	bindings := filepath.Join(t.TempDir(), "emitters.json")
	if err := os.WriteFile(bindings, []byte(`{"emitters": [{"name": "billing", "tags": {"team": "billing", "cost_center": "cc-7"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Start(ctx, Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1", ClickHouseDSN: clickhouseDSN(), Database: db,
		Partitions: 2, Streams: stream.DefaultOptions, EmitterBindingsFile: bindings, OpsAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := p.Wait(); err != nil {
			t.Errorf("pipeline stopped with: %v", err)
		}
		if strings.Contains(logs.String(), "permissions violation") {
			t.Errorf("the server refused a stage something:\n%s", logs.String())
		}
	}()
	url := p.NATSURL()

	if _, err := nats.Connect(url, nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous client: err %v, want %v", err, nats.ErrAuthorization)
	}

	seed, err := natsauth.AddEmitter(p.NATSCredsDir(), "billing")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 4)
	nc, err := emit.Connect(url, seed, nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				refused <- err
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	em, err := emit.New(nc, emit.Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	forged := fmt.Sprintf(`{"id":"forged-0","time":%q,"provider":"openai","model":"gpt-4o","response_id":"chatcmpl-billing-0","usage":{"input_tokens":1,"output_tokens":1},"tags":{"team":"search"}}`,
		now.Format(time.RFC3339Nano))
	resp, err := http.Post("http://"+p.CollectorAddr()+"/v1/events", event.ContentNDJSON, strings.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("anonymous report: %s", resp.Status)
	}
	storedAs := func(id string) string {
		var s string
		_ = conn.QueryRow(context.Background(), "SELECT toString(count()) FROM "+db+".usage_events WHERE event_id = ?", id).Scan(&s)
		return s
	}
	testkit.Eventually(t, 60*time.Second, "the anonymous report stored", func() bool { return storedAs("forged-0") == "1" })
	for i := range 3 {
		// A team billing's binding may not charge: charged to billing.
		u := event.Usage{ID: fmt.Sprintf("billing-%d", i), Time: now, Provider: "openai", Model: "gpt-4o",
			ResponseID: fmt.Sprintf("chatcmpl-billing-%d", i),
			Usage:      event.Tokens{Input: 1000, Output: 100}, Tags: map[string]string{"team": "search", "emitter": "search-api"}}
		if err := em.Emit(u); err != nil {
			t.Fatal(err)
		}
	}
	// The emitter is admitted once the server has reloaded its users (EmitterPoll).
	closeCtx, closeCancel := context.WithTimeout(ctx, time.Minute)
	defer closeCancel()
	if err := em.Close(closeCtx); err != nil {
		t.Fatalf("emitter close: %v\n%s", err, logs.String())
	}
	count := func() string {
		var s string
		_ = conn.QueryRow(context.Background(), "SELECT toString(count()) FROM "+db+".usage_events "+
			"WHERE team = 'billing' AND cost_center = 'cc-7' AND tag_values[indexOf(tag_keys, 'emitter')] = 'billing'").Scan(&s)
		return s
	}
	testkit.Eventually(t, 60*time.Second, "the emitter's 3 events stored as billing's", func() bool { return count() == "3" })
	// A forged, already priced batch: refused.
	if err := nc.Publish(stream.EnrichedSubject(0), []byte("forged")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-refused:
		if want := `nats: permissions violation: Permissions Violation for Publish to "usage.enriched.0"`; err.Error() != want {
			t.Errorf("refusal %q, want %q", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("publish to usage.enriched.0: not refused after 10s")
	}
	// Usage as another emitter, or as the collector, whose events no binding covers: refused.
	for _, subj := range []string{stream.EmitterRawSubject(0, "search"), stream.RawSubject(0)} {
		if err := nc.Publish(subj, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-refused:
			if want := `nats: permissions violation: Permissions Violation for Publish to "` + subj + `"`; err.Error() != want {
				t.Errorf("refusal %q, want %q", err, want)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("publish to %s: not refused after 10s", subj)
		}
	}
	var other string
	if err := conn.QueryRow(context.Background(), "SELECT toString(sum(events)) FROM "+db+".spend_1d WHERE team != 'billing'").Scan(&other); err != nil || other != "0" {
		t.Errorf("spend of other teams: %q events, %v; want 0", other, err)
	}
	var decision string
	if err := conn.QueryRow(context.Background(), "SELECT concat(kept_event_id, '/', kept_source, ' ', dropped_event_id, '/', dropped_source, ' ', reason, ' ', toString(displaced)) FROM "+db+".usage_conflicts").Scan(&decision); err != nil ||
		decision != "billing-0/emitter:billing forged-0/ higher_rank 1" {
		t.Errorf("usage_conflicts = %q, %v; want the emitter's report kept, the anonymous one displaced", decision, err)
	}

	parts, err := reconcile.Run(ctx, reconcile.Config{
		NATSURL: url, NATS: natsconn.Config{NKeyFile: natsauth.SeedFile(p.NATSCredsDir(), natsauth.Reconcile)},
		ClickHouseDSN: clickhouseDSN(), Database: db, Partitions: 2,
	})
	if err != nil {
		t.Fatalf("reconcile as its own identity: %v", err)
	}
	if err := reconcile.Err(parts); err != nil {
		t.Errorf("reconcile: %v", err)
	}

	// The alerter reads USAGE_ENRICHED live as its own identity: the four reports (one
	// response reported twice) count as three, and it never lost its live consumer.
	metrics := func() string {
		resp, err := http.Get("http://" + p.OpsAddr() + "/metrics")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	testkit.Eventually(t, 10*time.Second, "the alerter counts 3 events", func() bool {
		return strings.Contains(metrics(), "\ntokenmeter_alerter_events_total 3\n")
	})
	if m := metrics(); !strings.Contains(m, `tokenmeter_alerter_catchups_total{reason="start"} 1`) || strings.Contains(m, `reason="lost"`) || strings.Contains(m, `reason="behind"`) {
		t.Errorf("the alerter's catch-ups:\n%s", grepLines(m, "tokenmeter_alerter_catchups_total"))
	}

	// The alerter keeps silences in its own KV bucket, which its identity may write: the
	// API on the ops address makes one.
	resp, err = http.Post("http://"+p.OpsAddr()+"/api/v2/silences", "application/json", strings.NewReader(fmt.Sprintf(
		`{"matchers":[{"name":"team","value":"search"}],"startsAt":%q,"endsAt":%q,"createdBy":"test"}`,
		now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("silence through the ops address: %s", resp.Status)
	}

	dnc, err := natsconn.Connect(url, "dashboard", natsconn.Config{NKeyFile: natsauth.SeedFile(p.NATSCredsDir(), natsauth.Dashboard)})
	if err != nil {
		t.Fatal(err)
	}
	defer dnc.Close()
	djs, err := jetstream.New(dnc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dashboard.Budgets(ctx, djs); err != nil {
		t.Errorf("dashboard reads budgets as its own identity: %v", err)
	}
	if _, _, err := dashboard.Alerts(ctx, djs); err != nil {
		t.Errorf("dashboard reads alerts as its own identity: %v", err)
	}
}

// TestNATSTLS runs the pipeline with a TLS-only NATS listener that requires client
// certificates: a client with the CA, a certificate and its key reads as the dashboard; one
// without TLS is refused; the stages, in-process, still carry an event to ClickHouse.
func TestNATSTLS(t *testing.T) {
	conn := openClickHouse(t)
	db := freshDatabase(t, conn)
	pki := natstest.NewPKI(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1",
		NATSTLS:       TLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CA},
		ClickHouseDSN: clickhouseDSN(), Database: db, Partitions: 2, Streams: stream.DefaultOptions,
		Logger: slog.New(slog.DiscardHandler),
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
	_, addr, _ := strings.Cut(p.NATSURL(), "://")
	key := natsauth.SeedFile(p.NATSCredsDir(), natsauth.Dashboard)
	nc, err := natsconn.Connect("tls://"+addr, "dashboard", natsconn.Config{NKeyFile: key, CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey})
	if err != nil {
		t.Fatalf("connect with TLS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dashboard.Alerts(ctx, js); err != nil {
		t.Errorf("dashboard reads alerts over TLS: %v", err)
	}
	if nc, err := natsconn.Connect("nats://"+addr, "plain", natsconn.Config{NKeyFile: key}, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("a client without TLS connected")
	}
	send(t, "http://"+p.CollectorAddr()+"/v1/events",
		`{"id":"tls-1","provider":"openai","model":"gpt-4o","usage":{"input_tokens":10,"output_tokens":5},"tags":{"team":"search"}}`, `{"accepted":1,"rejected":[]}`)
	testkit.Eventually(t, 60*time.Second, "event tls-1 stored once", func() bool {
		var n uint64
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".usage_events WHERE event_id = 'tls-1'").Scan(&n)
		return n == 1
	})
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
