package natsauth_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	collectorbudget "github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
)

// fixture is a JetStream server admitting the identities of a fresh credentials directory
// (every role and one emitter, "billing"), with the streams and the budgets bucket created.
type fixture struct {
	s   *server.Server
	dir string
	// admin may do anything: it inspects what the others could not do.
	admin jetstream.JetStream
}

func start(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	if err := natsauth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.AddEmitter(dir, "billing"); err != nil {
		t.Fatal(err)
	}
	ids, err := natsauth.Identities(dir)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	adminPub, _ := admin.PublicKey()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Nkeys: append(natsauth.Users(ids, 4), &server.NkeyUser{Nkey: adminPub}),
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready after 10s")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL(), nats.Nkey(adminPub, admin.Sign))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.DefaultOptions); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: kv.Budgets}); err != nil {
		t.Fatal(err)
	}
	return &fixture{s: s, dir: dir, admin: js}
}

// client is a connection under one identity, with the permission errors the server sent it.
type client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func (f *fixture) as(t *testing.T, seedFile string) *client {
	t.Helper()
	c := &client{errs: make(chan error, 16)}
	var err error
	c.nc, err = natsconn.Connect(f.s.ClientURL(), "test", natsconn.Config{NKeyFile: seedFile},
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.nc.Close)
	if c.js, err = jetstream.New(c.nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// refused waits for the server's refusal of what c just did, and checks its text.
func (c *client) refused(t *testing.T, want string) {
	t.Helper()
	select {
	case err := <-c.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || err.Error() != "nats: permissions violation: "+want {
			t.Fatalf("error %q, want the permissions violation %q", err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no refusal after 10s, want %q", want)
	}
}

func short() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 500*time.Millisecond)
}

func (f *fixture) msgs(t *testing.T, name string) uint64 {
	t.Helper()
	st, err := f.admin.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestAnonymousClientIsRefused(t *testing.T) {
	f := start(t)
	_, err := nats.Connect(f.s.ClientURL(), nats.NoReconnect())
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connect: err %v, want %v", err, nats.ErrAuthorization)
	}
}

func TestUnknownKeyIsRefused(t *testing.T) {
	f := start(t)
	// A seed of another credentials directory: a valid key the server does not know.
	other := t.TempDir()
	if err := natsauth.Ensure(other); err != nil {
		t.Fatal(err)
	}
	_, err := natsconn.Connect(f.s.ClientURL(), "stranger", natsconn.Config{NKeyFile: natsauth.SeedFile(other, natsauth.Collector)}, nats.NoReconnect())
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect with an unknown key: err %v, want %v", err, nats.ErrAuthorization)
	}
}

func TestEmitterPublishesUsageOnly(t *testing.T) {
	f := start(t)
	em := f.as(t, natsauth.EmitterFile(f.dir, "billing"))
	ctx := context.Background()
	for p := range 4 {
		if _, err := em.js.Publish(ctx, stream.EmitterRawSubject(p, "billing"), []byte("x")); err != nil {
			t.Fatalf("publish to %s: %v", stream.EmitterRawSubject(p, "billing"), err)
		}
	}
	if got := f.msgs(t, stream.Raw); got != 4 {
		t.Fatalf("%s holds %d messages, want 4", stream.Raw, got)
	}

	// Another emitter's subject, or the collector's, whose events no binding covers: refused,
	// nothing stored. The collector and the proxy still publish usage.raw.<p>.
	for _, subj := range []string{stream.EmitterRawSubject(0, "search"), stream.RawSubject(0), "usage.raw.0.billing.x", "usage.raw.0.*"} {
		sctx, cancel := short()
		_, err := em.js.Publish(sctx, subj, []byte("forged"))
		cancel()
		if err == nil {
			t.Fatalf("publish to %s with billing's key: acknowledged", subj)
		}
		em.refused(t, `Permissions Violation for Publish to "`+subj+`"`)
	}
	if got := f.msgs(t, stream.Raw); got != 4 {
		t.Fatalf("%s holds %d messages, want 4", stream.Raw, got)
	}
	for _, r := range []natsauth.Role{natsauth.Collector, natsauth.Proxy} {
		c := f.as(t, natsauth.SeedFile(f.dir, r))
		if _, err := c.js.Publish(ctx, stream.RawSubject(1), []byte("x")); err != nil {
			t.Fatalf("%s publishes to %s: %v", r, stream.RawSubject(1), err)
		}
	}
	if got := f.msgs(t, stream.Raw); got != 6 {
		t.Fatalf("%s holds %d messages, want 6", stream.Raw, got)
	}

	// Forged enriched (priced) events: refused, nothing stored.
	sctx, cancel := short()
	_, err := em.js.Publish(sctx, stream.EnrichedSubject(0), []byte("forged"))
	cancel()
	if err == nil {
		t.Fatal("publish to usage.enriched.0: acknowledged")
	}
	em.refused(t, `Permissions Violation for Publish to "usage.enriched.0"`)
	if got := f.msgs(t, stream.Enriched); got != 0 {
		t.Fatalf("%s holds %d messages, want 0", stream.Enriched, got)
	}

	// A forged budget state, which would make the collector refuse a team's events.
	if err := em.nc.Publish("$KV."+kv.Budgets+".forged", []byte(`{"name":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	em.refused(t, `Permissions Violation for Publish to "$KV.tokenmeter_budgets.forged"`)
	bucket, err := f.admin.KeyValue(ctx, kv.Budgets)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Get(ctx, "forged"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("get the forged budget: err %v, want %v", err, jetstream.ErrKeyNotFound)
	}

	// Reading the streams, their configuration, or other clients' replies.
	sctx, cancel = short()
	_, err = em.js.Stream(sctx, stream.Enriched)
	cancel()
	if err == nil {
		t.Fatalf("stream info of %s: answered", stream.Enriched)
	}
	em.refused(t, `Permissions Violation for Publish to "$JS.API.STREAM.INFO.USAGE_ENRICHED"`)
	sctx, cancel = short()
	_, err = em.js.Stream(sctx, stream.Raw)
	cancel()
	if err == nil {
		t.Fatalf("stream info of %s: answered", stream.Raw)
	}
	em.refused(t, `Permissions Violation for Publish to "$JS.API.STREAM.INFO.USAGE_RAW"`)
	for _, subj := range []string{"usage.>", "_INBOX.>", "$KV.>"} {
		if _, err := em.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		em.refused(t, `Permissions Violation for Subscription to "`+subj+`"`)
	}
}

func TestReadersCannotWrite(t *testing.T) {
	f := start(t)
	for _, r := range []natsauth.Role{natsauth.Dashboard, natsauth.Reconcile, natsauth.Collector, natsauth.Proxy} {
		c := f.as(t, natsauth.SeedFile(f.dir, r))
		if err := c.nc.Publish("$KV."+kv.Budgets+".search", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c.refused(t, `Permissions Violation for Publish to "$KV.tokenmeter_budgets.search"`)
	}
	// The proxy watches the hard caps as the collector does.
	px := f.as(t, natsauth.SeedFile(f.dir, natsauth.Proxy))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := collectorbudget.NewEnforcer(nil, slog.New(slog.DiscardHandler)).Watch(ctx, px.js); err != nil {
		t.Fatalf("proxy watches %s: %v", kv.Budgets, err)
	}

	// The dashboard reads the budgets bucket, and nothing of the usage streams.
	d := f.as(t, natsauth.SeedFile(f.dir, natsauth.Dashboard))
	budgets, err := d.js.KeyValue(context.Background(), kv.Budgets)
	if err != nil {
		t.Fatalf("dashboard opens %s: %v", kv.Budgets, err)
	}
	if _, err := budgets.ListKeys(context.Background()); err != nil {
		t.Fatalf("dashboard lists %s: %v", kv.Budgets, err)
	}
	if err := d.nc.Publish(stream.RawSubject(0), []byte("x")); err != nil {
		t.Fatal(err)
	}
	d.refused(t, `Permissions Violation for Publish to "usage.raw.0"`)

	// Reconcile reads USAGE_HISTORY, but may not touch the alerter's live consumer.
	rc := f.as(t, natsauth.SeedFile(f.dir, natsauth.Reconcile))
	if _, err := rc.js.Stream(context.Background(), stream.History); err != nil {
		t.Fatalf("reconcile looks up %s: %v", stream.History, err)
	}
	sctx, cancel := short()
	err = rc.js.DeleteConsumer(sctx, stream.Enriched, stream.AlerterLiveConsumer)
	cancel()
	if err == nil {
		t.Fatal("reconcile deleted the alerter's live consumer")
	}
	rc.refused(t, `Permissions Violation for Publish to "$JS.API.CONSUMER.DELETE.USAGE_ENRICHED.alerter-live"`)
	for _, r := range []natsauth.Role{natsauth.Collector, natsauth.Enricher, natsauth.Aggregator, natsauth.Alerter} {
		c := f.as(t, natsauth.SeedFile(f.dir, r))
		sctx, cancel := short()
		err := c.js.DeleteStream(sctx, stream.Raw)
		cancel()
		if err == nil {
			t.Fatalf("%s deleted %s", r, stream.Raw)
		}
		c.refused(t, `Permissions Violation for Publish to "$JS.API.STREAM.DELETE.USAGE_RAW"`)
	}
	if got := f.msgs(t, stream.Raw); got != 0 {
		t.Fatalf("%s holds %d messages, want 0", stream.Raw, got)
	}
}

func TestSeedFilesArePrivate(t *testing.T) {
	dir := t.TempDir()
	if err := natsauth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	emitter, err := natsauth.AddEmitter(dir, "billing")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{emitter}
	for _, r := range natsauth.Roles {
		files = append(files, natsauth.SeedFile(dir, r))
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	// A second Ensure keeps every identity.
	identities := func() []natsauth.Identity {
		ids, err := natsauth.Identities(dir)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	before := identities()
	if err := natsauth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	after := identities()
	if len(before) != len(after) {
		t.Fatalf("identities: %d then %d", len(before), len(after))
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("identity %d: %+v then %+v", i, before[i], after[i])
		}
	}
	if _, err := natsauth.AddEmitter(dir, "billing"); !errors.Is(err, os.ErrExist) {
		t.Errorf("add emitter billing again: err %v, want %v", err, os.ErrExist)
	}
	if _, err := natsauth.AddEmitter(dir, "../x"); err == nil || !strings.Contains(err.Error(), `emitter name "../x"`) {
		t.Errorf("add emitter ../x: err %v", err)
	}
	// A seed file put there by hand under a name that is not one subject token would widen
	// its emitter's grant (usage.raw.*.>): its identity is refused.
	bad := filepath.Join(dir, "emitters", "a.>.nk")
	if err := os.WriteFile(bad, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.Identities(dir); err == nil || !strings.Contains(err.Error(), `the name "a.>" is not 1 to 64 of a-z`) {
		t.Errorf("identities with %s: err %v", bad, err)
	}
}
