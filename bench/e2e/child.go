package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/deploy/standalone"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// pipelineEnv, when set in a process's environment, makes RunPipelineIfAsked run the pipeline
// described by its value (a childConfig in JSON) in that process.
const pipelineEnv = "TOKENMETER_E2E_PIPELINE"

// childConfig is what the benchmark tells its pipeline process.
type childConfig struct {
	DataDir, CredsDir, ClickHouseDSN, Database string
	Partitions, InsertRows                     int
	InsertWait                                 time.Duration
	// Verbose logs the pipeline's warnings and errors to stderr.
	Verbose bool
	// HeapProfile, when set, names the file where the process writes, as it exits, the
	// in-use heap profile it took when its Go heap was largest (sampled every 100ms).
	HeapProfile string
}

// childReady is the pipeline process's first line on stdout.
type childReady struct {
	Collector, NATS string
}

// RunPipelineIfAsked makes this process the pipeline of a benchmark that started it (see
// pipeline) and exits, or returns at once in any other process. A program that runs Bench
// must call it first thing in main (and a test binary in TestMain), since the benchmark
// starts its pipelines by running its own executable again.
//
// The pipeline process runs standalone.Start — what `tokenmeter run` runs, with the same
// memory settings (standalone.ApplyMemoryLimit) — so that its peak RSS and CPU time are its
// own, not the load generator's. It reads commands, one per line, on stdin and answers each
// with one line on stdout: "cpu start", "cpu stop FILE" (the CPU profile since "cpu start",
// its goroutines labelled by stage) and "consumers" (where every consumer stands, as a JSON
// string). End of stdin stops the pipeline; the exit status says whether it stopped cleanly.
func RunPipelineIfAsked() {
	spec, ok := os.LookupEnv(pipelineEnv)
	if !ok {
		return
	}
	// Ctrl-C reaches the whole process group: the benchmark stops this process by closing
	// its stdin, after the run, so that the pipeline stops cleanly and its database is dropped.
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	if err := runChild(spec, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "e2e pipeline: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runChild(spec string, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	var cfg childConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		return fmt.Errorf("read the pipeline config %s=%q: %w", pipelineEnv, spec, err)
	}
	standalone.ApplyMemoryLimit(standalone.DefaultMemoryLimit)
	log := slog.New(slog.DiscardHandler)
	if cfg.Verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var heap *heapPeak
	if cfg.HeapProfile != "" {
		heap = watchHeap(ctx, 100*time.Millisecond)
	}
	p, err := standalone.Start(ctx, standalone.Config{
		DataDir: cfg.DataDir, NATSCredsDir: cfg.CredsDir, HTTPAddr: "127.0.0.1:0", NATSAddr: "127.0.0.1:-1",
		ClickHouseDSN: cfg.ClickHouseDSN, Database: cfg.Database, Partitions: cfg.Partitions,
		BatchMaxRows: cfg.InsertRows, BatchMaxWait: cfg.InsertWait, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("start the pipeline: %w", err)
	}
	defer func() {
		cancel()
		if werr := p.Wait(); werr != nil {
			err = errors.Join(err, fmt.Errorf("pipeline stopped with: %w", werr))
		}
		if heap != nil {
			err = errors.Join(err, heap.write(cfg.HeapProfile))
		}
	}()
	js, err := jetstream.New(p.NATS())
	if err != nil {
		return fmt.Errorf("new JetStream context: %w", err)
	}
	if err := waitStarted(ctx, js, cfg.Partitions); err != nil {
		return err
	}
	if err := waitReady(ctx, p); err != nil {
		return err
	}
	if err := writeLine(stdout, childReady{Collector: p.CollectorAddr(), NATS: p.NATSURL()}); err != nil {
		return err
	}
	var cpu bytes.Buffer
	in := bufio.NewScanner(stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		var answer any = "ok"
		switch cmd {
		case "cpu":
			switch verb, file, _ := strings.Cut(arg, " "); verb {
			case "start":
				cpu.Reset()
				if err := pprof.StartCPUProfile(&cpu); err != nil {
					answer = "error: " + err.Error()
				}
			case "stop":
				pprof.StopCPUProfile()
				if err := os.WriteFile(file, cpu.Bytes(), 0o644); err != nil {
					answer = "error: " + err.Error()
				}
			default:
				answer = "error: unknown cpu command " + verb
			}
		case "consumers":
			answer = consumerStates(js).Error()
		default:
			answer = "error: unknown command " + cmd
		}
		if err := writeLine(stdout, answer); err != nil {
			return err
		}
	}
	return in.Err()
}

func writeLine(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("answer the benchmark: %w", err)
	}
	return nil
}

// waitStarted waits until the enricher consumes USAGE_RAW and every aggregator partition
// consumes USAGE_ENRICHED; the aggregator creates its consumers after the migrations.
func waitStarted(ctx context.Context, js jetstream.JetStream, partitions int) error {
	consumers := func(name string) int {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return 0
		}
		return s.CachedInfo().State.Consumers
	}
	deadline := time.After(time.Minute)
	for consumers(stream.Raw) < 1 || consumers(stream.Enriched) < partitions {
		select {
		case <-deadline:
			return errors.New("the pipeline's consumers did not start within a minute")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// waitReady waits until every stage of the pipeline says it is ready (what /readyz answers):
// the aggregator has applied the migrations and each partition's writer holds its lease and
// has loaded its de-duplication set. Events sent before that wait in USAGE_ENRICHED for the
// writers: the first paced seconds measured that start-up (first markers 2.9 s, falling to
// the steady 0.3–0.6 s at 20,000 events/s), not the pipeline's latency.
func waitReady(ctx context.Context, p *standalone.Pipeline) error {
	deadline := time.After(time.Minute)
	for {
		err := p.Ready()
		if err == nil {
			return nil
		}
		select {
		case <-deadline:
			return fmt.Errorf("the pipeline was not ready within a minute: %w", err)
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// consumerStates describes where every durable consumer stands, to tell where events that
// never arrived are waiting.
func consumerStates(js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var lines []string
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		for c := range st.ListConsumers(ctx).Info() {
			lines = append(lines, fmt.Sprintf("%s/%s: delivered %d, ack floor %d, ack pending %d, redelivered %d, pending %d, waiting %d",
				name, c.Name, c.Delivered.Stream, c.AckFloor.Stream, c.NumAckPending, c.NumRedelivered, c.NumPending, c.NumWaiting))
		}
	}
	return fmt.Errorf("consumers:\n%s", strings.Join(lines, "\n"))
}

// heapPeak keeps the in-use heap profile taken when the Go heap's objects were largest.
type heapPeak struct {
	mu      sync.Mutex
	max     uint64
	profile []byte
	done    chan struct{}
}

func watchHeap(ctx context.Context, every time.Duration) *heapPeak {
	h := &heapPeak{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > h.max {
				var buf bytes.Buffer
				if pprof.Lookup("heap").WriteTo(&buf, 0) == nil {
					h.mu.Lock()
					h.max, h.profile = v, buf.Bytes()
					h.mu.Unlock()
				}
			}
		}
	}()
	return h
}

func (h *heapPeak) write(file string) error {
	<-h.done
	if err := os.WriteFile(file, h.profile, 0o644); err != nil {
		return fmt.Errorf("write the heap profile: %w", err)
	}
	return nil
}

// child is a pipeline process started by the benchmark.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	ready childReady
}

// startChild runs this executable again as the pipeline process of cfg and waits until it is
// consuming, so that start-up (migrations, streams, consumers) is not measured.
func startChild(ctx context.Context, cfg childConfig) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this executable to run the pipeline: %w", err)
	}
	spec, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	c := &child{cmd: exec.Command(exe)}
	c.cmd.Env = append(os.Environ(), pipelineEnv+"="+string(spec))
	c.cmd.Stderr = os.Stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.out = bufio.NewScanner(stdout)
	c.out.Buffer(nil, 1<<20)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the pipeline process %s: %w", exe, err)
	}
	started := make(chan error, 1)
	go func() { started <- c.read(&c.ready) }()
	select {
	case err = <-started:
	case <-ctx.Done():
		err = fmt.Errorf("wait for the pipeline to start: %w", context.Cause(ctx))
	}
	if err != nil {
		return nil, errors.Join(err, c.stop())
	}
	return c, nil
}

// Pid is the pipeline process's id.
func (c *child) Pid() int { return c.cmd.Process.Pid }

func (c *child) read(v any) error {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return fmt.Errorf("read from the pipeline process: %w", err)
		}
		return errors.New("the pipeline process ended")
	}
	if err := json.Unmarshal(c.out.Bytes(), v); err != nil {
		return fmt.Errorf("read the pipeline process's answer %q: %w", c.out.Bytes(), err)
	}
	return nil
}

// do sends one command and returns its answer.
func (c *child) do(cmd string) (string, error) {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		return "", fmt.Errorf("send %q to the pipeline process: %w", cmd, err)
	}
	var answer string
	if err := c.read(&answer); err != nil {
		return "", err
	}
	if msg, ok := strings.CutPrefix(answer, "error: "); ok {
		return "", fmt.Errorf("pipeline process: %s: %s", cmd, msg)
	}
	return answer, nil
}

// stop closes the pipeline process's stdin, which stops it, and waits until it exited.
func (c *child) stop() error {
	_ = c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("pipeline process: %w", err)
	}
	return nil
}
