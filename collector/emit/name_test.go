package emit

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// TestEmitterPublishesOnItsName checks that an emitter publishes on usage.raw.<p>.<name>: the
// name a connection made by Connect carries (its seed file's), or Options.Name.
func TestEmitterPublishesOnItsName(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	js := streamtest.Streams(t, natstest.Connect(t, s), nil)
	// The connection Connect makes for the seed file .../billing.nk.
	nc, err := nats.Connect(s.ClientURL(), nats.Name(connName+"/billing"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	e := newEmitter(t, nc, Options{FlushInterval: 10 * time.Millisecond})
	emitRange(t, e, 0, 100)
	closeEmitter(t, e, 10*time.Second)
	equalIDs(t, storedIDsOn(t, js, "billing"), wantIDs(0, 100))

	// Options.Name wins over the connection's.
	raw, err := js.Stream(t.Context(), stream.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Purge(t.Context()); err != nil {
		t.Fatal(err)
	}
	e = newEmitter(t, nc, Options{Name: "search-api", FlushInterval: 10 * time.Millisecond})
	emitRange(t, e, 100, 200)
	closeEmitter(t, e, 10*time.Second)
	equalIDs(t, storedIDsOn(t, js, "search-api"), wantIDs(100, 200))

	for _, bad := range []string{"a.b", "*", ">", "Billing", strings.Repeat("a", 65)} {
		_, err := New(nc, Options{Name: bad})
		if want := `invalid emitter options: name "` + bad + `" must be 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit`; err == nil || err.Error() != want {
			t.Errorf("New with name %q: err %v, want %s", bad, err, want)
		}
	}
	for name, want := range map[string]string{"": "", "tokenmeter-emitter": "", "other/billing": "", connName + "/a.b": "", connName + "/billing": "billing"} {
		c := &nats.Conn{Opts: nats.Options{Name: name}}
		if got := nameOf(c); got != want {
			t.Errorf("nameOf(connection %q) = %q, want %q", name, got, want)
		}
	}
}

// TestSpoolReplaysOnTheEmittersSubject spools batches of an emitter without a name while NATS
// is down — usage.raw.<p>, as an emitter of an earlier version wrote them — and checks that an
// emitter named billing on the same directory replays them on usage.raw.<p>.billing, where
// its identity may publish, each event once.
func TestSpoolReplaysOnTheEmittersSubject(t *testing.T) {
	natsDir, spoolDir := t.TempDir(), t.TempDir()
	port := downServer(t, natsDir, nil)
	nc := connectLater(t, port)
	e := newEmitter(t, nc, spoolOptions(spoolDir))
	const n = 500
	emitRange(t, e, 0, n)
	allSpooled(t, e, n)
	closeEmitter(t, e, 10*time.Second)
	if files := segmentFiles(t, spoolDir); len(files) == 0 {
		t.Fatal("nothing spooled")
	}

	natstest.Start(t, natsDir, port)
	opts := spoolOptions(spoolDir)
	opts.Name = "billing"
	e = newEmitter(t, nc, opts)
	testkit.Eventually(t, 20*time.Second, "every event replayed", func() bool { return e.Stats().Replayed == n })
	closeEmitter(t, e, 10*time.Second)
	equalIDs(t, storedIDsOn(t, jsOf(t, nc), "billing"), wantIDs(0, n))
	if files := segmentFiles(t, spoolDir); len(files) != 0 {
		t.Errorf("spool segments left after replay: %v", files)
	}
}
