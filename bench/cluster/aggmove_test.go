//go:build chaos && chcluster

package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/aggregator/lease"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/testkit"
)

// TestMakeClusterAggregatorMoves is fault scenario 16 on what `make cluster` runs: the
// aggregator moves to another host and back while events flow. A second aggregator process —
// the other host: the command line cluster.sh gave the first, with another -instance and
// -ops — starts next to the first and waits for the partition leases. The first is stopped
// with SIGTERM; it releases its leases on the way out and the second takes every partition
// at once. The first is started again, now the one waiting, and the second is killed with
// SIGKILL: its leases expire 15 s after their last renewal and the first takes the partitions
// back. Every table read through the Distributed tables is exact, nothing is dead-lettered and
// reconcile is clean. Run it with make chaos-clickhouse-cluster.
func TestMakeClusterAggregatorMoves(t *testing.T) {
	m := startMakeCluster(t)
	r := m.run
	const (
		hostA, opsA = "local-cluster", "127.0.0.1:9103" // as deploy/cluster/cluster.sh starts it
		hostB, opsB = "other-host", "127.0.0.1:9113"
	)
	pidA := m.pid("aggregator")
	argsA := cmdline(t, pidA)
	b := m.startAggregator("aggregator-b", withFlags(t, argsA, "-instance", hostB, "-ops", opsB))
	testkit.Eventually(t, time.Minute, "the second aggregator up, waiting for the leases", func() bool {
		code, body := readyz(opsB)
		return code == http.StatusServiceUnavailable && strings.Contains(body, `held by "`+hostA+`"`)
	})
	if got := m.holders(); !slices.Equal(got, []string{hostA, hostA, hostA, hostA}) {
		t.Fatalf("partition leases held by %q, want %s for each", got, hostA)
	}

	sending := r.sendSlowly(80_000) // 40 s
	testkit.Eventually(t, time.Minute, "a first part of the events stored", func() bool { return r.stored() >= 4_000 })

	// Host A stops gracefully: it finishes its INSERT, releases the leases, and B takes over.
	released := m.watchReleases()
	at, start := r.stored(), time.Now()
	if err := syscall.Kill(pidA, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var stopped time.Duration // from SIGTERM to the first aggregator's exit
	timeline := m.timeline(start, opsB)
	testkit.Eventually(t, time.Minute, "the second aggregator writing every partition", func() bool {
		if stopped == 0 && exited(pidA) {
			stopped = time.Since(start)
		}
		return timeline(http.StatusOK, hostB)
	})
	took := time.Since(start)
	testkit.Eventually(t, time.Minute, "the first aggregator gone", func() bool { return exited(pidA) })
	if stopped == 0 {
		stopped = time.Since(start)
	}
	t.Logf("SIGTERM to %s (pid %d) with %d events stored: it exited after %s, and %s wrote every partition after %s",
		hostA, pidA, at, stopped.Round(time.Millisecond), hostB, took.Round(time.Millisecond))
	if got := released(); !slices.Equal(got, slices.Repeat([]string{"released, then " + hostB}, partitions)) {
		t.Errorf("after the SIGTERM, the partition leases went %q; want each released, then %s (none left to expire)", got, hostB)
	}
	if log := m.log("aggregator"); !strings.Contains(log, `"level":"INFO","msg":"aggregator stopped"`) {
		t.Errorf("the first aggregator's log does not end with a clean stop:\n%s", log[max(0, len(log)-2000):])
	}

	// Host A comes back, and waits for the leases B holds; then B crashes.
	a := m.startAggregator("aggregator", argsA) // cluster.sh stop stops it by its pid file
	at = r.stored()
	testkit.Eventually(t, time.Minute, "more events stored by the second aggregator", func() bool { return r.stored() >= at+4_000 })
	code, body := readyz(opsA)
	t.Logf("%s started again: /readyz %d %s", hostA, code, strings.TrimSpace(body))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("the first aggregator started again is ready (%d) while %s holds the leases", code, hostB)
	}
	at, start = r.stored(), time.Now()
	if err := b.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	timeline = m.timeline(start, opsA)
	testkit.Eventually(t, time.Minute, "the first aggregator writing every partition again", func() bool {
		return timeline(http.StatusOK, hostA)
	})
	t.Logf("SIGKILL to %s (pid %d) with %d events stored: %s took every partition back after %s (lease TTL %s)",
		hostB, b.Process.Pid, at, hostA, time.Since(start).Round(time.Millisecond), lease.DefaultTTL)

	if err := <-sending; err != nil {
		t.Fatalf("send: %v", err)
	}
	r.check(catalog(t))
	if dead, err := deadLetters(context.Background(), r.js); err != nil || dead != 0 {
		t.Errorf("USAGE_DEAD holds %d messages (%v), want 0", dead, err)
	}
	if got := m.holders(); !slices.Equal(got, []string{hostA, hostA, hostA, hostA}) {
		t.Errorf("partition leases held by %q at the end, want %s for each", got, hostA)
	}
	if !a.running() {
		t.Errorf("the first aggregator exited: %v", a.err)
	}
}

// timeline returns a check, for testkit.Eventually, that the aggregator whose ops address
// is addr answers /readyz with code and that holder holds every partition's lease. It logs
// each change of the leases' holders and of that answer, with the time since start: where a
// move spends its time.
func (m *makeCluster) timeline(start time.Time, addr string) func(code int, holder string) bool {
	last := ""
	return func(code int, holder string) bool {
		got, body := readyz(addr)
		holders := m.holders()
		body = strings.ReplaceAll(strings.TrimSpace(body), "\n", "; ")
		if now := fmt.Sprintf("leases %q; %s /readyz %d %s", holders, addr, got, body[:min(len(body), 160)]); now != last {
			m.t.Logf("%8s %s", time.Since(start).Round(time.Millisecond), now)
			last = now
		}
		return got == code && slices.Equal(holders, slices.Repeat([]string{holder}, partitions))
	}
}

// watchReleases watches the partition leases until the returned function is called, which
// says for each partition what happened to its lease meanwhile: "released, then <holder>"
// when a holder deleted it (a graceful stop) and another took it, "<holder>" when that one
// took it without a release before (it had expired), "" when nothing happened.
func (m *makeCluster) watchReleases() func() []string {
	m.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bucket, err := m.js.KeyValue(ctx, kv.Leases)
	if err != nil {
		m.t.Fatal(err)
	}
	w, err := bucket.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		m.t.Fatal(err)
	}
	got, keys := make([]string, partitions), map[string]int{}
	for p := range partitions {
		keys[lease.Key(p)] = p
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			p, ok := keys[e.Key()]
			switch {
			case !ok:
			case e.Operation() != jetstream.KeyValuePut:
				got[p] = "released"
			case got[p] == "released":
				got[p] = "released, then " + string(e.Value())
			case !strings.HasPrefix(got[p], "released, then "):
				got[p] = string(e.Value()) // a renewal, or a take-over without a release
			}
		}
	}()
	return func() []string {
		_ = w.Stop()
		cancel()
		<-done
		return got
	}
}

// proc is a process a test started, reaped as soon as it exits.
type proc struct {
	*exec.Cmd
	done chan struct{}
	err  error // Wait's, once done is closed
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// startAggregator starts the aggregator command line args as cluster.sh would under name:
// logging to logs/<name>.log and with its pid in <name>.pid. It is killed when the test ends
// unless it was stopped before.
func (m *makeCluster) startAggregator(name string, args []string) *proc {
	m.t.Helper()
	logf, err := os.OpenFile(filepath.Join(m.dir, "logs", name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	defer logf.Close()
	p := &proc{Cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	p.Dir, p.Env, p.Stdout, p.Stderr = "../..", m.env, logf, logf
	if err := p.Start(); err != nil {
		m.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.Wait()
		close(p.done)
	}()
	m.t.Cleanup(func() {
		if p.running() {
			_ = p.Process.Kill()
			<-p.done
		}
	})
	if err := os.WriteFile(filepath.Join(m.dir, name+".pid"), []byte(strconv.Itoa(p.Process.Pid)+"\n"), 0o644); err != nil {
		m.t.Fatal(err)
	}
	return p
}

// pid is the process id in cluster.sh's pid file of name.
func (m *makeCluster) pid(name string) int {
	m.t.Helper()
	data, err := os.ReadFile(filepath.Join(m.dir, name+".pid"))
	if err != nil {
		m.t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		m.t.Fatalf("%s.pid: %v", name, err)
	}
	return n
}

// log is the log of name's processes.
func (m *makeCluster) log(name string) string {
	data, _ := os.ReadFile(filepath.Join(m.dir, "logs", name+".log"))
	return string(data)
}

// holders names the holder of each partition's lease, "" where none holds it.
func (m *makeCluster) holders() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bucket, err := m.js.KeyValue(ctx, kv.Leases)
	if err != nil {
		return nil
	}
	out := make([]string, partitions)
	for p := range out {
		e, err := bucket.Get(ctx, lease.Key(p))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return nil
		default:
			out[p] = string(e.Value())
		}
	}
	return out
}

// exited reports whether process pid has exited: it is gone, or a zombie (cluster.sh's
// processes are not the test's children, and whoever inherits them may reap them late).
func exited(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// readyz is the status code and body of the /readyz of the ops address addr; 0 when it does
// not answer.
func readyz(addr string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// cmdline is the command line of process pid.
func cmdline(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// withFlags is args with the values of the given flags (name, value pairs) replaced; each
// flag must be in args.
func withFlags(t *testing.T, args []string, flags ...string) []string {
	t.Helper()
	out := slices.Clone(args)
	for i := 0; i < len(flags); i += 2 {
		at := slices.Index(out, flags[i])
		if at < 0 || at+1 >= len(out) {
			t.Fatalf("flag %s not in %q", flags[i], args)
		}
		out[at+1] = flags[i+1]
	}
	return out
}
