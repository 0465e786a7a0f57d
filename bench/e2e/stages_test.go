package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// stageCPU sums the cpu/nanoseconds values of the samples by their stage label; samples of
// nats-server's own goroutines count as nats, others without a stage as GC & runtime.
func TestStageCPU(t *testing.T) {
	fn := &profile.Function{ID: 1, Name: "f"}
	loc := &profile.Location{ID: 1, Line: []profile.Line{{Function: fn}}}
	sample := func(ns int64, stage string) *profile.Sample {
		s := &profile.Sample{Location: []*profile.Location{loc}, Value: []int64{1, ns}}
		if stage != "" {
			s.Label = map[string][]string{"stage": {stage}}
		}
		return s
	}
	// A sample of a nats-server stream goroutine: its labels replaced the stage label.
	serverSample := &profile.Sample{Location: []*profile.Location{loc}, Value: []int64{1, 2_000_000},
		Label: map[string][]string{"account": {"$G"}, "stream": {"USAGE_RAW"}}}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		Sample: []*profile.Sample{
			sample(10_000_000, "collector"), sample(20_000_000, "collector"), sample(5_000_000, "aggregator"),
			sample(7_000_000, ""), sample(30_000_000, "enricher"), sample(4_000_000, "nats"), serverSample,
		},
		Location: []*profile.Location{loc}, Function: []*profile.Function{fn},
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := stageCPU(buf.Bytes(), StageOther)
	if err != nil {
		t.Fatal(err)
	}
	want := []StageCPU{{"collector", 30 * time.Millisecond}, {"enricher", 30 * time.Millisecond}, {StageOther, 7 * time.Millisecond}, {StageNATS, 6 * time.Millisecond}, {"aggregator", 5 * time.Millisecond}}
	if len(got) != len(want) {
		t.Fatalf("stageCPU = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stageCPU = %v, want %v", got, want)
		}
	}
	if _, err := stageCPU([]byte("not a profile"), StageOther); err == nil {
		t.Fatal("stageCPU of garbage succeeded")
	}
}

func TestWriteStageTable(t *testing.T) {
	results := []Result{
		{Name: "HTTP", Events: 1000, Stages: []StageCPU{{"collector", 3 * time.Millisecond}, {StageOther, 2 * time.Millisecond}, {StageLoadRuntime, 1500 * time.Microsecond}, {"nats", time.Millisecond}}},
		{Name: "HTTP", Rate: 5000, Events: 500},
		{Name: "emitter", Events: 2000, Stages: []StageCPU{{StageLoad, 4 * time.Millisecond}, {"aggregator", 2 * time.Millisecond}}},
	}
	var b strings.Builder
	if err := WriteStageTable(&b, results); err != nil {
		t.Fatal(err)
	}
	want := `| CPU µs/event | collector | aggregator | nats | GC & runtime | **tokenmeter** | load generator | load GC & runtime |
|---|---:|---:|---:|---:|---:|---:|---:|
| HTTP | 3.0 | 0.0 | 1.0 | 2.0 | 6.0 | 0.0 | 1.5 |
| emitter | 0.0 | 1.0 | 0.0 | 0.0 | 1.0 | 2.0 | 0.0 |
`
	if b.String() != want {
		t.Fatalf("WriteStageTable:\n%s\nwant\n%s", b.String(), want)
	}
}
