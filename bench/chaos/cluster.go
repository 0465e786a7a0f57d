// Package chaos runs tokenmeter as separate processes on loopback — a nats-server process
// with its file store, the collector, and one or more enrichers and aggregators — so that
// fault tests can kill any of them with SIGKILL at any moment and restart it, and then check
// ClickHouse against the exact totals of what was accepted; and so that the scale-out
// benchmark (bench/cmd/scaleout) can run N of each.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names of the processes of a cluster.
const (
	NATS       = "nats-server"
	Collector  = "collector"
	Enricher   = "enricher"
	Aggregator = "aggregator"
)

// packages maps each binary to the Go package it is built from.
var packages = map[string]string{
	NATS:       "github.com/nats-io/nats-server/v2",
	Collector:  "github.com/tokenmeter/tokenmeter/collector/cmd/collector",
	Enricher:   "github.com/tokenmeter/tokenmeter/enricher/cmd/enricher",
	Aggregator: "github.com/tokenmeter/tokenmeter/aggregator/cmd/aggregator",
}

// Build compiles the four binaries into dir with `go build`, from the bench module (which
// requires every one of them), with the build tags given: "testhooks" compiles in the
// aggregator's fault-injection hook (TOKENMETER_TEST_EXIT_AFTER_INSERT), which production
// binaries lack.
func Build(ctx context.Context, dir string, tags ...string) error {
	for name, pkg := range packages {
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", strings.Join(tags, ","), "-o", filepath.Join(dir, name), pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return nil
}

// Config describes a cluster.
type Config struct {
	// BinDir holds the binaries Build made.
	BinDir string
	// WorkDir receives the NATS file store and one log file per process start.
	WorkDir       string
	ClickHouseDSN string
	Database      string
	// PricingDir is the enricher's pricing directory; empty means the shipped catalogue.
	PricingDir string
	// AckWait is both consumers' ack wait: how soon the messages a killed process held are
	// redelivered.
	AckWait time.Duration
	// Partitions is the stream partition count every stage is given; 0 leaves each stage's
	// default.
	Partitions int
	// Enrichers and Aggregators are how many processes of each run (0 means 1). Enrichers
	// share one durable consumer; aggregator i owns the partitions p with p % Aggregators == i.
	Enrichers, Aggregators int
	// Env is extra environment (KEY=value) of every process.
	Env []string
}

// Instance names the i-th process (from 0) of a stage that runs several: the stage's own
// name for the first, then "aggregator#2", "aggregator#3", ...
func Instance(stage string, i int) string {
	if i == 0 {
		return stage
	}
	return stage + "#" + strconv.Itoa(i+1)
}

// stageOf is the stage of an instance name, and index its number from 0.
func stageOf(name string) (stage string, index int) {
	stage, n, ok := strings.Cut(name, "#")
	if !ok {
		return name, 0
	}
	i, _ := strconv.Atoi(n)
	return stage, i - 1
}

// Names lists every process of the cluster, NATS first.
func (c *Cluster) Names() []string {
	names := []string{NATS, Collector}
	for i := range c.cfg.Enrichers {
		names = append(names, Instance(Enricher, i))
	}
	for i := range c.cfg.Aggregators {
		names = append(names, Instance(Aggregator, i))
	}
	return names
}

// Validate reports every missing or invalid field.
func (c Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"BinDir": c.BinDir, "WorkDir": c.WorkDir, "ClickHouseDSN": c.ClickHouseDSN, "Database": c.Database} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("AckWait (%v) must be at least 1s", c.AckWait))
	}
	if c.Partitions < 0 || c.Enrichers < 0 || c.Aggregators < 0 {
		errs = append(errs, fmt.Errorf("Partitions (%d), Enrichers (%d) and Aggregators (%d) must not be negative", c.Partitions, c.Enrichers, c.Aggregators))
	}
	if c.Aggregators > 1 && c.Aggregators > c.Partitions {
		errs = append(errs, fmt.Errorf("Aggregators (%d) must not outnumber Partitions (%d): each owns at least one", c.Aggregators, c.Partitions))
	}
	return errors.Join(errs...)
}

// Cluster is a running set of processes. Its methods are safe for concurrent use.
type Cluster struct {
	cfg Config
	// Ports, fixed for the cluster's life so that a restarted process is found again: NATS's,
	// the collector's HTTP port, and each stage process's ops port.
	natsPort, collectorPort int
	opsPorts                map[string]int

	mu    sync.Mutex
	procs map[string]*Proc
	// Env is extra environment per process name, used at its next start.
	env map[string][]string
}

// Proc is one start of a process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // what Wait returned, once done is closed
	Log  string
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the process has ended.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// ExitCode is the process's exit status, or -1 while it runs or when a signal ended it.
func (p *Proc) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// New validates cfg and reserves the cluster's ports; Start starts the processes.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("chaos cluster config: %w", err)
	}
	cfg.Enrichers, cfg.Aggregators = max(cfg.Enrichers, 1), max(cfg.Aggregators, 1)
	c := &Cluster{cfg: cfg, procs: map[string]*Proc{}, env: map[string][]string{}, opsPorts: map[string]int{}}
	for _, name := range c.Names() {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		switch name {
		case NATS:
			c.natsPort = port
		case Collector:
			c.collectorPort = port
			if c.opsPorts[name], err = freePort(); err != nil {
				return nil, err
			}
		default:
			c.opsPorts[name] = port
		}
	}
	return c, nil
}

// freePort returns a loopback TCP port that was free a moment ago. It picks below Linux's
// ephemeral range (32768–60999): a port the kernel handed out there
// could be taken, before the process binds it, by one of the many outgoing connections the
// stages open (seen in CI: "bind: address already in use").
func freePort() (int, error) {
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("find a free port: none of 1,000 tried in 20000-31999 is free")
}

// NATSURL is where the nats-server process listens.
func (c *Cluster) NATSURL() string { return "nats://127.0.0.1:" + strconv.Itoa(c.natsPort) }

// CollectorURL is the collector's base URL.
func (c *Cluster) CollectorURL() string { return "http://127.0.0.1:" + strconv.Itoa(c.collectorPort) }

// OpsURL is the base URL of a stage process's /healthz, /readyz and /metrics.
func (c *Cluster) OpsURL(name string) string {
	if port, ok := c.opsPorts[name]; ok {
		return "http://127.0.0.1:" + strconv.Itoa(port)
	}
	return c.CollectorURL()
}

// owned lists the partitions aggregator i owns, as its -own flag takes them.
func (c *Cluster) owned(i int) string {
	var ps []string
	for p := i; p < c.cfg.Partitions; p += c.cfg.Aggregators {
		ps = append(ps, strconv.Itoa(p))
	}
	return strings.Join(ps, ",")
}

// SetEnv sets the extra environment (KEY=value) that name gets from its next start on.
func (c *Cluster) SetEnv(name string, env ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.env[name] = env
}

// SetPricingDir changes the enricher's pricing directory from its next start on.
func (c *Cluster) SetPricingDir(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.PricingDir = dir
}

func (c *Cluster) args(name string) []string {
	ack := c.cfg.AckWait.String()
	stage, i := stageOf(name)
	ops := strings.TrimPrefix(c.OpsURL(name), "http://")
	switch stage {
	case NATS:
		return []string{"-a", "127.0.0.1", "-p", strconv.Itoa(c.natsPort), "-js", "-sd", filepath.Join(c.cfg.WorkDir, "nats")}
	case Collector:
		args := []string{"-nats", c.NATSURL(), "-addr", "127.0.0.1:" + strconv.Itoa(c.collectorPort), "-ops", ops}
		if c.cfg.Partitions > 0 {
			args = append(args, "-partitions", strconv.Itoa(c.cfg.Partitions))
		}
		return args
	case Enricher:
		args := []string{"-nats", c.NATSURL(), "-ops", ops, "-ack-wait", ack}
		if c.cfg.PricingDir != "" {
			args = append(args, "-pricing", c.cfg.PricingDir)
		}
		return args
	case Aggregator:
		args := []string{"-nats", c.NATSURL(), "-ops", ops, "-ack-wait", ack,
			"-clickhouse", c.cfg.ClickHouseDSN, "-database", c.cfg.Database}
		if c.cfg.Partitions > 0 {
			args = append(args, "-partitions", strconv.Itoa(c.cfg.Partitions))
		}
		if c.cfg.Aggregators > 1 {
			args = append(args, "-own", c.owned(i))
		}
		return args
	}
	return nil
}

// Start starts the whole cluster, NATS first, and waits until every process is ready.
func (c *Cluster) Start(ctx context.Context) error {
	for _, name := range c.Names() {
		if _, err := c.StartProc(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// StartProc starts name (which must not be running) and waits until it is ready: NATS
// accepts connections, a stage answers /readyz with 200. It returns the process even when
// it exits before it is ready (as a test hook can make the aggregator do), with an error.
func (c *Cluster) StartProc(ctx context.Context, name string) (*Proc, error) {
	c.mu.Lock()
	if p := c.procs[name]; p != nil {
		select {
		case <-p.done:
		default:
			c.mu.Unlock()
			return nil, fmt.Errorf("start %s: already running", name)
		}
	}
	args := c.args(name)
	env := append(append(os.Environ(), c.cfg.Env...), c.env[name]...)
	logPath := filepath.Join(c.cfg.WorkDir, fmt.Sprintf("%s-%s.log", strings.ReplaceAll(name, "#", "-"), time.Now().UTC().Format("150405.000000")))
	c.mu.Unlock()

	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	stage, _ := stageOf(name)
	cmd := exec.Command(filepath.Join(c.cfg.BinDir, stage), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), Log: logPath}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p, c.waitReady(ctx, p)
}

func (c *Cluster) waitReady(ctx context.Context, p *Proc) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		var ready bool
		if p.Name == NATS {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(c.natsPort), time.Second)
			if err == nil {
				conn.Close()
				ready = true
			}
		} else if resp, err := client.Get(c.OpsURL(p.Name) + "/readyz"); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		if ready {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); log %s", p.Name, p.err, p.Log)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w; log %s", p.Name, ctx.Err(), p.Log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Proc returns the last start of name, or nil.
func (c *Cluster) Proc(name string) *Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// Kill sends SIGKILL to name and waits until it is gone: no shutdown code runs, as in a
// machine or OOM kill.
func (c *Cluster) Kill(name string) error { return c.signal(name, syscall.SIGKILL) }

// Stop sends SIGTERM to name and waits until it has shut down.
func (c *Cluster) Stop(name string) error { return c.signal(name, syscall.SIGTERM) }

func (c *Cluster) signal(name string, sig syscall.Signal) error {
	p := c.Proc(name)
	if p == nil {
		return fmt.Errorf("signal %s: never started", name)
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send %v to %s: %w", sig, name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(time.Minute):
		return fmt.Errorf("%s still running a minute after %v", name, sig)
	}
}

// Close stops every process, stages before NATS, killing what does not stop within a
// minute.
func (c *Cluster) Close() error {
	var errs []error
	names := c.Names()
	for _, name := range append(names[1:], NATS) {
		if c.Proc(name) == nil {
			continue
		}
		if err := c.Stop(name); err != nil {
			errs = append(errs, err, c.Kill(name))
		}
	}
	return errors.Join(errs...)
}
