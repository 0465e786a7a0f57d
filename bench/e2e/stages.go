package e2e

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/google/pprof/profile"

	"github.com/tokenmeter/tokenmeter/deploy/standalone"
)

// Stages the benchmark itself adds to the pipeline's (standalone.StageLabel values).
const (
	StageLoad  = "load generator" // HTTP clients or the emitter
	StageBench = "benchmark"      // polling ClickHouse
	StageOther = "GC & runtime"   // the pipeline's goroutines without a stage: the garbage collector's, mostly
	// StageNATS is the embedded nats-server's own stage (standalone's label for it).
	StageNATS = "nats"
	// StageLoadRuntime is the load generator process's goroutines without a stage.
	StageLoadRuntime = "load GC & runtime"
)

// withStage runs fn with the goroutine labelled as working for stage.
func withStage(ctx context.Context, stage string, fn func(context.Context)) {
	pprof.Do(ctx, pprof.Labels(standalone.StageLabel, stage), fn)
}

// cpuProfile samples this process's CPU while a run lasts; stop returns the profile, or nil
// when another CPU profile was already running (then the stages are not reported).
type cpuProfile struct {
	buf     bytes.Buffer
	running bool
}

func startCPUProfile() *cpuProfile {
	p := &cpuProfile{}
	p.running = pprof.StartCPUProfile(&p.buf) == nil
	return p
}

func (p *cpuProfile) stop() []byte {
	if !p.running {
		return nil
	}
	pprof.StopCPUProfile()
	return p.buf.Bytes()
}

// StageCPU is the CPU time one stage spent in a run, from the profile's samples.
type StageCPU struct {
	Stage string
	CPU   time.Duration
}

// natsServerLabel is a pprof label nats-server sets on the goroutines of its streams and
// consumers. It sets them on a fresh context, which drops the stage label standalone gave the
// server, so without it their work (storing every message, sourcing USAGE_HISTORY) would count
// as unlabelled — as the garbage collector's.
const natsServerLabel = "account"

// stageCPU sums a CPU profile's samples by stage label, largest first; samples of
// nats-server's goroutines count as StageNATS, others without a stage as unlabelled.
func stageCPU(data []byte, unlabelled string) ([]StageCPU, error) {
	p, err := profile.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse the CPU profile: %w", err)
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("the CPU profile has no cpu/nanoseconds values")
	}
	by := map[string]time.Duration{}
	for _, s := range p.Sample {
		stage := unlabelled
		if v := s.Label[standalone.StageLabel]; len(v) > 0 {
			stage = v[0]
		} else if len(s.Label[natsServerLabel]) > 0 {
			stage = StageNATS
		}
		by[stage] += time.Duration(s.Value[idx])
	}
	out := make([]StageCPU, 0, len(by))
	for st, d := range by {
		out = append(out, StageCPU{st, d})
	}
	sortStages(out)
	return out, nil
}

// sortStages sorts by CPU, largest first, then by name.
func sortStages(s []StageCPU) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].CPU != s[j].CPU {
			return s[i].CPU > s[j].CPU
		}
		return s[i].Stage < s[j].Stage
	})
}

// MergeProfiles merges the runs' CPU profiles, the pipeline processes' and the load
// generator's, into one, e.g. to write to a file for pprof.
func MergeProfiles(results []Result) ([]byte, error) {
	var ps []*profile.Profile
	for _, r := range results {
		for _, data := range [][]byte{r.Profile, r.LoadProfile} {
			if data == nil {
				continue
			}
			p, err := profile.Parse(bytes.NewReader(data))
			if err != nil {
				return nil, fmt.Errorf("parse the CPU profile of run %s: %w", r.Name, err)
			}
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("no run has a CPU profile")
	}
	m, err := profile.Merge(ps)
	if err != nil {
		return nil, fmt.Errorf("merge CPU profiles: %w", err)
	}
	var buf bytes.Buffer
	if err := m.Write(&buf); err != nil {
		return nil, fmt.Errorf("write the merged CPU profile: %w", err)
	}
	return buf.Bytes(), nil
}
