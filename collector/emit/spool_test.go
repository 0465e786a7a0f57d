package emit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/collector/internal/spool"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// downServer creates the streams in a NATS store directory, then stops the server. It
// returns the port to restart it on with natstest.Start(tb, dir, port).
func downServer(tb testing.TB, dir string, edit func(*jetstream.StreamConfig)) int {
	tb.Helper()
	s := natstest.Start(tb, dir, -1)
	port := natstest.Port(tb, s)
	nc := natstest.Connect(tb, s)
	streamtest.Streams(tb, nc, edit)
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	return port
}

// connectLater returns a connection to a server that is not running yet: it keeps trying.
func connectLater(tb testing.TB, port int) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(
		fmt.Sprintf("nats://127.0.0.1:%d", port),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
	)
	if err != nil {
		tb.Fatalf("connect to NATS: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func jsOf(tb testing.TB, nc *nats.Conn) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// spoolOptions are fast to retry and small enough to spool several batches.
func spoolOptions(dir string) Options {
	return Options{
		BatchSize: 100, FlushInterval: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		PublishTimeout: time.Second, SpoolDir: dir,
	}
}

func emitRange(tb testing.TB, e *Emitter, from, to int) {
	tb.Helper()
	for i := from; i < to; i++ {
		if err := e.Emit(usage(i)); err != nil {
			tb.Fatalf("Emit(%d): %v", i, err)
		}
	}
}

func closeEmitter(tb testing.TB, e *Emitter, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

func segmentFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		tb.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// allSpooled waits until every emitted event left memory for the spool.
func allSpooled(tb testing.TB, e *Emitter, n uint64) {
	tb.Helper()
	testkit.Eventually(tb, 10*time.Second, "every event spooled", func() bool {
		st := e.Stats()
		return st.Spooled == n && st.Buffered == 0
	})
}

func TestSpoolWhileNATSDownFromTheStart(t *testing.T) {
	natsDir, spoolDir := t.TempDir(), t.TempDir()
	port := downServer(t, natsDir, nil)
	nc := connectLater(t, port)
	reg := prometheus.NewRegistry()
	opts := spoolOptions(spoolDir)
	opts.Registerer = reg
	e := newEmitter(t, nc, opts)
	const n = 1000
	emitRange(t, e, 0, n)
	allSpooled(t, e, n)
	st := e.Stats()
	if st.Published != 0 || st.SpoolEvents != n || st.SpoolMessages == 0 || st.SpoolBytes == 0 {
		t.Fatalf("Stats() while NATS is down = %+v, want all %d events in the spool", st, n)
	}
	if got := metric(t, reg, "tokenmeter_emit_spool_events"); got != n {
		t.Errorf("tokenmeter_emit_spool_events = %v, want %d", got, n)
	}
	testkit.Eventually(t, 5*time.Second, "the breaker opens", func() bool {
		return metric(t, reg, "tokenmeter_emit_breaker_state") == 2
	})

	natstest.Start(t, natsDir, port)
	testkit.Eventually(t, 20*time.Second, "every event replayed", func() bool { return e.Stats().Published == n })
	equalIDs(t, storedIDs(t, jsOf(t, nc)), wantIDs(0, n))
	closeEmitter(t, e, 10*time.Second)
	st = e.Stats()
	if want := (Stats{Emitted: n, Published: n, Spooled: n, Replayed: n, Retries: st.Retries}); st != want {
		t.Errorf("Stats() = %+v, want %+v", st, want)
	}
	if files := segmentFiles(t, spoolDir); len(files) != 0 {
		t.Errorf("spool segments left after replay: %v", files)
	}
	for name, want := range map[string]float64{
		"tokenmeter_emit_events_spooled_total":   n,
		"tokenmeter_emit_events_replayed_total":  n,
		"tokenmeter_emit_events_published_total": n,
		"tokenmeter_emit_spool_bytes":            0,
		"tokenmeter_emit_breaker_state":          0,
	} {
		if got := metric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metric(t, reg, "tokenmeter_emit_publish_retries_total"); got != float64(st.Retries) || got == 0 {
		t.Errorf("tokenmeter_emit_publish_retries_total = %v, want Stats().Retries = %d > 0", got, st.Retries)
	}
}

// TestSpoolNATSKilledMidStream stops the server while a producer emits, and restarts it on
// the same store: every event lands in USAGE_RAW once.
func TestSpoolNATSKilledMidStream(t *testing.T) {
	natsDir, spoolDir := t.TempDir(), t.TempDir()
	s := natstest.Start(t, natsDir, -1)
	port := natstest.Port(t, s)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	e := newEmitter(t, nc, spoolOptions(spoolDir))

	const n = 6000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if err := e.Emit(usage(i)); err != nil {
				t.Errorf("Emit(%d): %v", i, err)
				return
			}
			if i%100 == 99 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	testkit.Eventually(t, 10*time.Second, "a first part published", func() bool { return e.Stats().Published >= 1000 })
	s.Shutdown()
	testkit.Eventually(t, 10*time.Second, "events spooled during the outage", func() bool { return e.Stats().Spooled >= 1000 })
	natstest.Start(t, natsDir, port)
	wg.Wait()
	// Close would leave the spool for the next emitter if it found the client still
	// reconnecting; wait for the replay instead.
	testkit.Eventually(t, 20*time.Second, "every event published", func() bool { return e.Stats().Published == n })
	closeEmitter(t, e, 20*time.Second)

	equalIDs(t, storedIDs(t, js), wantIDs(0, n))
	st := e.Stats()
	if st.Emitted != n || st.Published != n || st.Replayed != st.Spooled || st.Buffered != 0 || st.SpoolEvents != 0 || st.Dropped != 0 {
		t.Errorf("Stats() = %+v, want %d emitted and published, everything spooled replayed", st, n)
	}
}

// TestSpoolFullStream fills a small USAGE_RAW (DiscardNew) to the last byte: every batch is
// refused and spooled, and replayed once a purge makes room.
func TestSpoolFullStream(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, func(c *jetstream.StreamConfig) {
		if c.Name == stream.Raw {
			c.MaxBytes = 64 << 10
		}
	})
	// Fill the stream with ever smaller messages until not even one byte fits.
	for _, size := range []int{8 << 10, 1 << 10, 100, 10, 1} {
		for {
			_, err := js.Publish(context.Background(), stream.RawSubject(0), make([]byte, size))
			if err != nil {
				if !stream.IsFull(err) {
					t.Fatalf("fill %s: %v", stream.Raw, err)
				}
				break
			}
		}
	}
	spoolDir := t.TempDir()
	e := newEmitter(t, nc, spoolOptions(spoolDir))
	const n = 3000
	emitRange(t, e, 0, n)
	allSpooled(t, e, n)
	// The stream stays full: replays keep failing, and every segment stays on disk.
	testkit.Eventually(t, 10*time.Second, "replays refused", func() bool { return e.Stats().Retries > 3*n/100 })
	if st := e.Stats(); st.Published != 0 || st.Replayed != 0 || st.SpoolEvents != n || len(segmentFiles(t, spoolDir)) == 0 {
		t.Fatalf("Stats() = %+v with the stream full, want all %d events in the spool", st, n)
	}

	raw, err := js.Stream(context.Background(), stream.Raw)
	if err != nil {
		t.Fatal(err)
	}
	// Make room: raise the limit (3000 events need more than 64 KiB) and purge the filler.
	cfg := raw.CachedInfo().Config
	cfg.MaxBytes = 64 << 20
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := raw.Purge(context.Background()); err != nil {
		t.Fatalf("purge %s: %v", stream.Raw, err)
	}
	testkit.Eventually(t, 20*time.Second, "the spool replayed", func() bool { return e.Stats().Published == n })
	equalIDs(t, storedIDs(t, js), wantIDs(0, n))
	closeEmitter(t, e, 10*time.Second)
	if st := e.Stats(); st.Replayed != n || st.Spooled != n || st.SpoolBytes != 0 {
		t.Errorf("Stats() = %+v, want all %d events spooled and replayed", st, n)
	}
	if files := segmentFiles(t, spoolDir); len(files) != 0 {
		t.Errorf("spool segments left after replay: %v", files)
	}
}

// TestSpoolSurvivesRestart closes an emitter while NATS is down; a new emitter on the same
// directory replays what it left.
func TestSpoolSurvivesRestart(t *testing.T) {
	natsDir, spoolDir := t.TempDir(), t.TempDir()
	port := downServer(t, natsDir, nil)
	nc := connectLater(t, port)
	first := newEmitter(t, nc, spoolOptions(spoolDir))
	emitRange(t, first, 0, 500)

	if _, err := New(nc, spoolOptions(spoolDir)); err == nil || !strings.Contains(err.Error(), "is another emitter using it?") {
		t.Errorf("New on a spool in use = %v, want a lock error", err)
	}
	// Close spools everything at once: NATS is down.
	closeEmitter(t, first, 10*time.Second)
	if st := first.Stats(); st.Spooled != 500 || st.Buffered != 0 || st.Published != 0 || st.SpoolEvents != 500 {
		t.Fatalf("Stats() after Close = %+v, want 500 events spooled", st)
	}

	s := natstest.Start(t, natsDir, port)
	nc2 := natstest.Connect(t, s)
	second := newEmitter(t, nc2, spoolOptions(spoolDir))
	testkit.Eventually(t, 20*time.Second, "the spool replayed", func() bool { return second.Stats().Replayed == 500 })
	closeEmitter(t, second, 10*time.Second)
	equalIDs(t, storedIDs(t, jsOf(t, nc2)), wantIDs(0, 500))
	if st := second.Stats(); st != (Stats{Published: 500, Replayed: 500, Retries: st.Retries}) {
		t.Errorf("Stats() of the second emitter = %+v, want 500 published and replayed", st)
	}
}

// TestSpoolDamagedSegments replays a spool whose first record is corrupt and whose last one
// is torn: exactly the events of those two records are missing, and both are counted.
func TestSpoolDamagedSegments(t *testing.T) {
	natsDir, spoolDir := t.TempDir(), t.TempDir()
	port := downServer(t, natsDir, nil)
	nc := connectLater(t, port)
	first := newEmitter(t, nc, spoolOptions(spoolDir))
	const n = 400
	emitRange(t, first, 0, n)
	closeEmitter(t, first, 10*time.Second)

	files := segmentFiles(t, spoolDir)
	if len(files) == 0 {
		t.Fatal("no spool segment")
	}
	lost := map[string]bool{}
	recordIDs := func(file string, last bool) (offset int, size int) {
		t.Helper()
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msgs, dmg := spool.DecodeSegment(data)
		if len(msgs) < 2 || dmg != (spool.Damage{}) {
			t.Fatalf("segment %s: %d messages, damage %+v; want 2 or more, undamaged", file, len(msgs), dmg)
		}
		i := 0
		if last {
			i = len(msgs) - 1
		}
		rows, err := batch.Decode(msgs[i].Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			lost[r.ID] = true
		}
		rec := spool.AppendRecord(nil, &msgs[i])
		if last {
			return len(data) - len(rec), len(rec)
		}
		return 0, len(rec)
	}
	_, firstSize := recordIDs(files[0], false)
	last := files[len(files)-1]
	lastOffset, lastSize := recordIDs(last, true)
	// Corrupt a byte inside the first record's data.
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, int64(firstSize-3)); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := f.WriteAt(b, int64(firstSize-3)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Tear the last record in two, as a crash while writing it would.
	if err := os.Truncate(last, int64(lastOffset+lastSize/2)); err != nil {
		t.Fatal(err)
	}

	s := natstest.Start(t, natsDir, port)
	nc2 := natstest.Connect(t, s)
	second := newEmitter(t, nc2, spoolOptions(spoolDir))
	testkit.Eventually(t, 20*time.Second, "the spool replayed", func() bool { return second.Stats().SpoolBytes == 0 })
	closeEmitter(t, second, 10*time.Second)

	var want []string
	for _, id := range wantIDs(0, n) {
		if !lost[id] {
			want = append(want, id)
		}
	}
	if len(want) >= n || len(want) == 0 {
		t.Fatalf("%d events in the damaged records, want some of %d", n-len(want), n)
	}
	equalIDs(t, storedIDs(t, jsOf(t, nc2)), want)
	if st := second.Stats(); st.SpoolDamaged != 2 || st.Replayed != uint64(len(want)) {
		t.Errorf("Stats() = %+v, want 2 damaged regions and %d events replayed", st, len(want))
	}
	if files := segmentFiles(t, spoolDir); len(files) != 0 {
		t.Errorf("spool segments left after replay: %v", files)
	}
}

// TestSpoolFullPolicy: with the spool full and the buffer full, Emit refuses with
// ErrSpoolFull, visibly; Close still keeps everything it took on disk, past the limit, and a
// new emitter delivers it.
func TestSpoolFullPolicy(t *testing.T) {
	natsDir, spoolDir := t.TempDir(), t.TempDir()
	port := downServer(t, natsDir, nil)
	nc := connectLater(t, port)
	reg := prometheus.NewRegistry()
	opts := spoolOptions(spoolDir)
	opts.BatchSize, opts.MaxBuffered, opts.SpoolMaxBytes, opts.Registerer = 10, 50, 1, reg
	e := newEmitter(t, nc, opts)
	emitRange(t, e, 0, 50)
	testkit.Eventually(t, 10*time.Second, "the spool reported full", func() bool {
		return metric(t, reg, "tokenmeter_emit_spool_full") == 1
	})
	for i := 50; i < 53; i++ {
		err := e.Emit(usage(i))
		if !errors.Is(err, ErrSpoolFull) || !errors.Is(err, ErrBufferFull) || err.Error() != "emitter spool is full: emitter buffer is full" {
			t.Fatalf("Emit(%d) = %v, want ErrSpoolFull (an ErrBufferFull)", i, err)
		}
	}
	st := e.Stats()
	if st.Emitted != 50 || st.Buffered != 50 || st.Spooled != 0 || st.SpoolFull != 3 || st.Dropped != 3 {
		t.Errorf("Stats() = %+v, want 50 emitted and buffered, 3 refused as spool full", st)
	}
	for name, want := range map[string]float64{
		"tokenmeter_emit_spool_full_total":     3,
		"tokenmeter_emit_events_dropped_total": 3,
		"tokenmeter_emit_events_buffered":      50,
	} {
		if got := metric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// NATS is still down: Close gives up after its deadline and spools what it holds.
	closeEmitter(t, e, 300*time.Millisecond)
	if st := e.Stats(); st.Spooled != 50 || st.Buffered != 0 || st.SpoolEvents != 50 {
		t.Fatalf("Stats() after Close = %+v, want all 50 events spooled past the limit", st)
	}

	s := natstest.Start(t, natsDir, port)
	nc2 := natstest.Connect(t, s)
	next := newEmitter(t, nc2, spoolOptions(spoolDir))
	testkit.Eventually(t, 20*time.Second, "the spool replayed", func() bool { return next.Stats().Replayed == 50 })
	closeEmitter(t, next, 10*time.Second)
	equalIDs(t, storedIDs(t, jsOf(t, nc2)), wantIDs(0, 50))
}

func TestSpoolOptionsValidate(t *testing.T) {
	err := Options{SpoolMaxBytes: -1, SpoolSegmentBytes: -1}.Validate()
	want := "spool max bytes (-1) must be positive\nspool segment bytes (-1) must be positive"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}

// metric reads the value of an unlabelled counter or gauge from reg.
func metric(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	tb.Fatalf("no metric %s", name)
	return 0
}

func TestNewRefusesAnUnusableSpoolDir(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(nc, Options{SpoolDir: filepath.Join(file, "spool")})
	if want := "new emitter: open spool " + filepath.Join(file, "spool") + ": mkdir " + file + ": not a directory"; err == nil || err.Error() != want {
		t.Errorf("New = %v, want %s", err, want)
	}
}
