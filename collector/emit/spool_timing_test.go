package emit

import (
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// BenchmarkSpoolOutage measures an outage: emitting b.N events with NATS down until all of
// them are on disk, then, NATS back, replaying them into file-backed JetStream.
func BenchmarkSpoolOutage(b *testing.B) {
	natsDir, spoolDir := b.TempDir(), b.TempDir()
	port := downServer(b, natsDir, nil)
	nc := connectLater(b, port)
	e := newEmitter(b, nc, Options{SpoolDir: spoolDir, MaxBackoff: 100 * time.Millisecond})
	b.ReportAllocs()
	start := time.Now()
	for i := range b.N {
		for e.Emit(usage(i)) != nil {
			time.Sleep(time.Millisecond) // the buffer is full: wait for the spool
		}
	}
	allSpooled(b, e, uint64(b.N))
	spooled := time.Since(start)
	st := e.Stats()

	natstest.Start(b, natsDir, port)
	start = time.Now()
	testkit.Eventually(b, 10*time.Minute, "the spool replayed", func() bool { return e.Stats().Replayed == uint64(b.N) })
	replayed := time.Since(start)
	b.StopTimer()
	closeEmitter(b, e, 10*time.Second)
	b.ReportMetric(float64(b.N)/spooled.Seconds(), "spooled-events/s")
	b.ReportMetric(float64(b.N)/replayed.Seconds(), "replayed-events/s")
	b.ReportMetric(float64(st.SpoolBytes)/float64(b.N), "spool-bytes/event")
}
