//go:build chaos

package cluster_test

import (
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/testkit"
)

// TestR3PipelineRollingRestart restarts the three servers one after another while events are
// being sent, as an upgrade of the cluster does, each only once the pipeline has made progress
// without it and it has caught up again; nothing may be lost or doubled. It runs with
// `make chaos-cluster` (about a minute), not in `make test`.
func TestR3PipelineRollingRestart(t *testing.T) {
	r, cat := start(t), catalog(t)
	sending := r.sendSlowly(60_000)
	for i := range r.c.Size() {
		at := r.stored()
		testkit.Eventually(t, time.Minute, "progress before the next restart", func() bool { return r.stored() >= at+3_000 })
		r.c.Stop(i)
		at = r.stored()
		testkit.Eventually(t, time.Minute, "progress without one server", func() bool { return r.stored() >= at+3_000 })
		r.c.Restart(i)
		t.Logf("restarted s%d with %d events stored", i, r.stored())
	}
	if err := <-sending; err != nil {
		t.Fatalf("send: %v", err)
	}
	r.check(cat)
	r.checkReplicas()
	r.stop()
}
