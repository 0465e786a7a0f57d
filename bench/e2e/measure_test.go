package e2e

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	thirty := hundred[:30]
	for _, c := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"no values", nil, 50, 0},
		{"one value p50", []time.Duration{7}, 50, 7},
		{"one value p99", []time.Duration{7}, 99, 7},
		{"1..100 p50", hundred, 50, 50 * time.Millisecond},
		{"1..100 p99", hundred, 99, 99 * time.Millisecond},
		{"1..100 p100", hundred, 100, 100 * time.Millisecond},
		{"1..100 p0.5 is the minimum", hundred, 0.5, time.Millisecond},
		{"1..30 p50", thirty, 50, 15 * time.Millisecond},
		{"1..30 p99 is the maximum", thirty, 99, 30 * time.Millisecond},
		{"two values p50 is the lower", []time.Duration{1, 2}, 50, 1},
		{"p0", hundred, 0, 0},
	} {
		if got := Percentile(c.sorted, c.p); got != c.want {
			t.Errorf("%s: Percentile(p=%v) = %s, want %s", c.name, c.p, got, c.want)
		}
	}
}

func TestSummarise(t *testing.T) {
	in := []time.Duration{5, 3, 9, 1, 7}
	got := summarise(in)
	if want := (Latencies{N: 5, P50: 5, P99: 9}); got != want {
		t.Errorf("summarise(%v) = %+v, want %+v", in, got, want)
	}
	if in[0] != 5 || in[4] != 7 {
		t.Errorf("summarise reordered its input: %v", in)
	}
}

func TestTimevalDuration(t *testing.T) {
	tv := syscall.Timeval{Sec: 3, Usec: 250_001}
	if got, want := timevalDuration(tv), 3*time.Second+250_001*time.Microsecond; got != want {
		t.Errorf("timevalDuration(%+v) = %s, want %s", tv, got, want)
	}
}

func TestParseProcStat(t *testing.T) {
	// Field 10 (minflt 123), fields 14 and 15 (utime 1234, stime 56) in clock ticks of 10ms.
	const tail = " S 1 2138 2138 0 -1 4194560 123 0 0 0 1234 56 0 0 20 0 60 0 1500 5189996544 54736 18446744073709551615"
	want := procUsage{CPU: 12900 * time.Millisecond, Faults: 123}
	for _, c := range []struct{ name, stat string }{
		{"plain name", "2138 (clickhouse-serv)" + tail},
		{"name with spaces and parentheses", "42 (a) b (c))" + tail},
	} {
		got, err := parseProcStat(c.stat)
		if err != nil || got != want {
			t.Errorf("%s: parseProcStat = %+v, %v; want %+v", c.name, got, err, want)
		}
	}
	for _, bad := range []string{"", "2138 clickhouse S 1", "2138 (x) S 1 2 3",
		"2138 (x) S 1 2138 2138 0 -1 4194560 123 0 0 0 12x4 56 0",
		"2138 (x) S 1 2138 2138 0 -1 4194560 -5 0 0 0 1234 56 0"} {
		if got, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q) = %+v, want an error", bad, got)
		}
	}
}

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tclickhouse-serv\nVmPeak:\t 5068356 kB\nVmHWM:\t  218944 kB\nVmRSS:\t  218000 kB\n"
	if got, err := parseVmHWM(status); err != nil || got != 218944*1024 {
		t.Errorf("parseVmHWM = %d, %v; want %d", got, err, 218944*1024)
	}
	for _, bad := range []string{"VmRSS:\t 1 kB\n", "VmHWM:\t 1 MB\n", "VmHWM:\t x kB\n"} {
		if got, err := parseVmHWM(bad); err == nil {
			t.Errorf("parseVmHWM(%q) = %d, want an error", bad, got)
		}
	}
}

// TestProcessCPU reads the real counters: they must grow with work, in whole microseconds,
// and agree with this process's /proc/self/stat.
func TestProcessCPU(t *testing.T) {
	before, err := processCPU()
	if err != nil {
		t.Fatal(err)
	}
	// Spin until 20ms of CPU time were used; on a busy machine that takes longer than 20ms.
	after := before
	for deadline := time.Now().Add(10 * time.Second); after-before < 20*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time went from %s to %s over a 10s busy loop", before, after)
		}
		if after, err = processCPU(); err != nil {
			t.Fatal(err)
		}
	}
	if before%time.Microsecond != 0 || after%time.Microsecond != 0 {
		t.Errorf("getrusage counts whole microseconds; got %s and %s", before, after)
	}
	self, err := PidCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in 10ms ticks and is sampled differently from getrusage; allow a second.
	if self%(10*time.Millisecond) != 0 || self > after+time.Second || self < before-time.Second {
		t.Errorf("CPU time from /proc/self/stat %s, from getrusage %s..%s", self, before, after)
	}
}

// TestProcessFaults touches 4 MiB of fresh memory and reads the faults it cost from getrusage
// and from /proc/self/stat: one per 4 KiB page, 1,024, unless the kernel gives the mapping
// transparent huge pages on its own ("always"), when two 2 MiB pages may serve it.
func TestProcessFaults(t *testing.T) {
	want := uint64(1024)
	if thp, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err == nil && strings.Contains(string(thp), "[always]") {
		want = 2
	}
	mem, err := syscall.Mmap(-1, 0, 4<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	faults := func() (rusage, proc uint64) {
		t.Helper()
		u, err := processUsage()
		if err != nil {
			t.Fatal(err)
		}
		p, err := PidUsage(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		return u.Faults, p.Faults
	}
	rusage0, proc0 := faults()
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	rusage1, proc1 := faults()
	if rusage1-rusage0 < want || proc1-proc0 < want {
		t.Errorf("minor faults grew by %d (getrusage) and %d (/proc) over 4 MiB of fresh memory; want at least %d each",
			rusage1-rusage0, proc1-proc0, want)
	}
}

func TestFindProcess(t *testing.T) {
	pidFile := t.TempDir() + "/server.pid"
	if err := os.WriteFile(pidFile, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FindProcess(pidFile, "no-such-process-name"); err != nil || got != 1 {
		t.Errorf("FindProcess(pid file holding 1) = %d, %v; want 1", got, err)
	}
	if got, err := FindProcess("", "no-such-process-name-"+strings.Repeat("x", 20)); err == nil {
		t.Errorf("FindProcess(unknown name) = %d, want an error", got)
	}
}

func TestRetryAfter(t *testing.T) {
	for h, want := range map[string]time.Duration{"1": time.Second, " 5 ": 5 * time.Second, "0": 0, "": time.Second, "soon": time.Second, "-3": time.Second} {
		if got := retryAfter(h); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", h, got, want)
		}
	}
}

func TestWriteTable(t *testing.T) {
	results := []Result{
		{Name: "HTTP", Events: 300_000, Elapsed: 7500 * time.Millisecond, Intake: 5 * time.Second,
			Queryable: Latencies{N: 30, P50: 2543400 * time.Microsecond, P99: 4523 * time.Millisecond},
			HTTP:      Latencies{N: 300, P50: 45600 * time.Microsecond, P99: 315800 * time.Microsecond},
			CPU:       4410 * time.Millisecond, LoadCPU: 300 * time.Millisecond, ClickHouseCPU: 4080 * time.Millisecond, ClickHouseKnown: true,
			PeakRSS: 996 << 20, LoadPeakRSS: 1500 << 20, LoadPeakRSSOfRun: true, ClickHousePeakRSS: 2100 << 20, ClickHousePeakRSSOfRun: true,
			Faults: 72_150, LoadFaults: 3_000, ClickHouseFaults: 25_499},
		{Name: "emitter", Events: 1000, Rate: 1234.5, Elapsed: time.Second, Intake: 500 * time.Millisecond,
			CPU: 15 * time.Millisecond, PeakRSS: 10<<20 + 5, LoadPeakRSS: 7 << 20, Faults: 1_234_567},
	}
	var b strings.Builder
	if err := WriteTable(&b, results); err != nil {
		t.Fatal(err)
	}
	want := `| run | events | events/s | intake events/s | accepted→queryable p50 / p99 | HTTP p50 / p99 | CPU µs/event tokenmeter / load / ClickHouse | peak RSS MiB tokenmeter / load / ClickHouse | page faults per 1,000 events tokenmeter / load / ClickHouse |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
| HTTP | 300,000 | 40,000 | 60,000 | 2543.4 / 4523.0 ms (n=30) | 45.6 / 315.8 ms | 14.7 / 1.0 / 13.6 | 996 / 1,500 / 2,100 | 241 / 10 / 85 |
| emitter @ 1,234/s | 1,000 | 1,000 | 2,000 | – | – | 15.0 / 0.0 / – | 10 / 7* / – | 1,234,567 / 0 / – |
`
	if got := b.String(); got != want {
		t.Errorf("WriteTable:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 39923: "39,923", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPidRSS(t *testing.T) {
	status := "Name:\tclickhouse-serv\nVmHWM:\t  218944 kB\nVmRSS:\t  218000 kB\n"
	if got, err := parseStatusKB(status, "VmRSS:"); err != nil || got != 218000*1024 {
		t.Errorf("parseStatusKB(VmRSS) = %d, %v; want %d", got, err, 218000*1024)
	}
	if got, err := parseStatusKB("VmHWM:\t 1 kB\n", "VmRSS:"); err == nil {
		t.Errorf("parseStatusKB without a VmRSS line = %d, want an error", got)
	}
	// This test binary holds at least a megabyte, and far less than the machine.
	if got, err := PidRSS(os.Getpid()); err != nil || got < 1<<20 || got > 8<<30 {
		t.Errorf("PidRSS(self) = %d, %v; want 1 MiB..8 GiB", got, err)
	}
}

// Listener finds the process listening on a port — here this test's own — and
// ServerProcess prefers it to a name that some other process's command line contains.
func TestListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if pid, err := Listener(port); err != nil || pid != os.Getpid() {
		t.Fatalf("Listener(%d) = %d, %v; want this process, %d", port, pid, err, os.Getpid())
	}
	if pid, err := ServerProcess("", ln.Addr().String(), "no-such-process-name"); err != nil || pid != os.Getpid() {
		t.Fatalf("ServerProcess(%s) = %d, %v; want this process, %d", ln.Addr(), pid, err, os.Getpid())
	}
	ln.Close()
	if pid, err := Listener(port); err == nil {
		t.Fatalf("Listener(%d) = %d after the listener closed, want an error", port, pid)
	}
}

func TestCountWait(t *testing.T) {
	const poll = 10 * time.Millisecond
	for _, c := range []struct {
		name          string
		done, left    uint64
		elapsed, want time.Duration
	}{
		{"nothing stored yet", 0, 1000, time.Second, maxCountWait},
		{"far from the end", 1000, 9000, time.Second, maxCountWait},                     // 9 s left
		{"an eighth of the time left", 1000, 1000, time.Second, 125 * time.Millisecond}, // 1 s left
		{"the end near", 1000, 40, time.Second, poll},                                   // 40 ms left
	} {
		if got := countWait(c.done, c.left, c.elapsed, poll); got != c.want {
			t.Errorf("%s: countWait(%d, %d, %v) = %v, want %v", c.name, c.done, c.left, c.elapsed, got, c.want)
		}
	}
	if got := countWait(1000, 9000, time.Second, time.Second); got != time.Second {
		t.Errorf("a poll longer than maxCountWait: got %v, want it", got)
	}
}
