package e2e

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of the sorted durations by the
// nearest-rank method: the smallest value that at least p percent of the values do not
// exceed. It returns 0 for no values. With few values a high percentile is the maximum: p99
// of 30 latencies is the slowest of them.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 || !(p > 0) {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Latencies summarises a set of durations.
type Latencies struct {
	N        int
	P50, P99 time.Duration
}

func summarise(d []time.Duration) Latencies {
	s := slices.Clone(d)
	slices.Sort(s)
	return Latencies{N: len(s), P50: Percentile(s, 50), P99: Percentile(s, 99)}
}

// timevalDuration converts a rusage time to a duration.
func timevalDuration(tv syscall.Timeval) time.Duration {
	return time.Duration(tv.Sec)*time.Second + time.Duration(tv.Usec)*time.Microsecond
}

// procUsage is what a process has used so far: CPU time (user + system) and minor page faults
// (first touches of memory the kernel must map; on this benchmark's virtual machine each costs
// several microseconds of system time, see docs/benchmarks.md).
type procUsage struct {
	CPU    time.Duration
	Faults uint64
}

// processUsage returns what this process has used so far, in all of its threads.
func processUsage() (procUsage, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return procUsage{}, fmt.Errorf("getrusage: %w", err)
	}
	return procUsage{CPU: timevalDuration(ru.Utime) + timevalDuration(ru.Stime), Faults: uint64(ru.Minflt)}, nil
}

// processCPU returns the CPU time (user + system) this process has used so far.
func processCPU() (time.Duration, error) {
	u, err := processUsage()
	return u.CPU, err
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat. It is part of Linux's user-space
// ABI (USER_HZ) and 100 on every architecture Go supports, whatever the kernel's tick rate.
const userHZ = 100

// parseProcStat returns utime + stime and minflt from the contents of /proc/<pid>/stat. The
// command name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last closing parenthesis.
func parseProcStat(stat string) (procUsage, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return procUsage{}, fmt.Errorf("parse /proc stat %q: no command name in parentheses", stat)
	}
	// After the name come field 3 (state) onwards; minflt is field 10, utime and stime are
	// fields 14 and 15.
	f := strings.Fields(stat[end+1:])
	if len(f) < 13 {
		return procUsage{}, fmt.Errorf("parse /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var v [3]uint64
	for i, s := range []string{f[7], f[11], f[12]} {
		var err error
		if v[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			return procUsage{}, fmt.Errorf("parse /proc stat field %q: %w", s, err)
		}
	}
	return procUsage{CPU: time.Duration(v[1]+v[2]) * time.Second / userHZ, Faults: v[0]}, nil
}

// PidCPU returns the CPU time (user + system) the process pid has used so far.
func PidCPU(pid int) (time.Duration, error) {
	u, err := PidUsage(pid)
	return u.CPU, err
}

// PidUsage returns what the process pid has used so far.
func PidUsage(pid int) (procUsage, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procUsage{}, fmt.Errorf("read the usage of process %d: %w", pid, err)
	}
	return parseProcStat(string(data))
}

// ServerProcess returns the pid of the server a benchmark measures: the one in pidFile when
// it names a live process, else the process listening on addr's TCP port (so that with
// several ClickHouse servers running, e.g. `make cluster`, it is the one the DSN reaches),
// else the first process whose command line contains name.
func ServerProcess(pidFile, addr, name string) (int, error) {
	if pidFile == "" {
		if _, port, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				if pid, err := Listener(n); err == nil {
					return pid, nil
				}
			}
		}
	}
	return FindProcess(pidFile, name)
}

// Listener returns the pid of the process listening on TCP port (IPv4 or IPv6), from
// /proc/net/tcp{,6} and the processes' open sockets.
func Listener(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on TCP port %d", port)
	}
	fds, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		return 0, fmt.Errorf("list open files: %w", err)
	}
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && inodes[link] {
			return strconv.Atoi(strings.Split(fd, "/")[2])
		}
	}
	return 0, fmt.Errorf("no process of ours holds the socket listening on TCP port %d", port)
}

// FindProcess returns the pid in pidFile when it names a live process, or else the first
// process other than this one whose command line contains name — what `pgrep -f name` does,
// without needing pgrep.
func FindProcess(pidFile, name string) (int, error) {
	if data, err := os.ReadFile(pidFile); pidFile != "" && err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
				return pid, nil
			}
		}
	}
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == self {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue // gone since the listing, or not ours to read
		}
		if bytes.Contains(cmd, []byte(name)) {
			return pid, nil
		}
	}
	if pidFile != "" {
		return 0, fmt.Errorf("no live pid in %s, and no process with %q in its command line", pidFile, name)
	}
	return 0, fmt.Errorf("no process with %q in its command line", name)
}

// parseVmHWM returns the peak resident set size, in bytes, from the contents of
// /proc/<pid>/status.
func parseVmHWM(status string) (int64, error) { return parseStatusKB(status, "VmHWM:") }

// parseStatusKB returns the size on the line of /proc/<pid>/status that starts with key
// ("VmRSS:"), in bytes.
func parseStatusKB(status, key string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse %s %q: want \"<n> kB\"", key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s %q: %w", key, f[0], err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("parse /proc status: no %s line", key)
}

// resetPeakRSS makes the kernel's peak RSS of process pid ("self" for this one) start again
// from its current RSS (clear_refs "5", Linux 4.0+), so that a run reports its own peak rather
// than the process's. It reports whether that worked; if not, PidPeakRSS is the peak since
// the process started.
func resetPeakRSS(pid string) bool {
	return os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0) == nil
}

// PidPeakRSS returns the peak resident set size (VmHWM) of process pid ("self" for this one),
// in bytes.
func PidPeakRSS(pid string) (int64, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, fmt.Errorf("read the peak RSS of process %s: %w", pid, err)
	}
	return parseVmHWM(string(data))
}

// PidRSS returns the resident set size of the process pid now, in bytes.
func PidRSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS of process %d: %w", pid, err)
	}
	return parseStatusKB(string(data), "VmRSS:")
}
