package e2e

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// WriteTable writes the results as a Markdown table, one row per run, to paste into
// docs/benchmarks.md. A dash marks what a run does not measure.
func WriteTable(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| run | events | events/s | intake events/s | accepted→queryable p50 / p99 | HTTP p50 / p99 | CPU µs/event tokenmeter / load / ClickHouse | peak RSS MiB tokenmeter / load / ClickHouse | page faults per 1,000 events tokenmeter / load / ClickHouse |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		name := runName(r)
		queryable, httpLat := "–", "–"
		if r.Queryable.N > 0 {
			queryable = fmt.Sprintf("%s / %s ms (n=%d)", ms(r.Queryable.P50), ms(r.Queryable.P99), r.Queryable.N)
		}
		if r.HTTP.N > 0 {
			httpLat = fmt.Sprintf("%s / %s ms", ms(r.HTTP.P50), ms(r.HTTP.P99))
		}
		ch, chFaults := "–", "–"
		if r.ClickHouseKnown {
			ch, chFaults = us(r.ClickHouseCPUPerEvent()), perThousand(r.ClickHouseFaults, r.Events)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %s / %s / %s |\n",
			name, thousands(int64(r.Events)), thousands(int64(r.EventsPerSecond())), thousands(int64(r.IntakePerSecond())),
			queryable, httpLat, us(r.CPUPerEvent()), us(perEvent(r.LoadCPU, r.Events)), ch,
			mib(r.PeakRSS, true), mib(r.LoadPeakRSS, r.LoadPeakRSSOfRun), mib(r.ClickHousePeakRSS, r.ClickHousePeakRSSOfRun),
			perThousand(r.Faults, r.Events), perThousand(r.LoadFaults, r.Events), chFaults)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// runName is the run's name in the tables: its path, its pace, and the events stored before
// the clock started.
func runName(r Result) string {
	name := r.Name
	if r.Rate > 0 {
		name += " @ " + thousands(int64(r.Rate)) + "/s"
	}
	if r.Warmup > 0 {
		name += ", after " + thousands(int64(r.Warmup))
	}
	return name
}

// perThousand formats n per 1,000 events, with no decimals.
func perThousand(n uint64, events int) string {
	if events <= 0 {
		return "–"
	}
	return thousands(int64(math.Round(float64(n) * 1000 / float64(events))))
}

// mib formats a peak RSS in MiB; a dash when unknown, and a star when the peak is the
// process's rather than the run's.
func mib(n int64, ofRun bool) string {
	if n <= 0 {
		return "–"
	}
	s := thousands(n >> 20)
	if !ofRun {
		s += "*"
	}
	return s
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

// us formats a duration in microseconds with one decimal.
func us(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64)
}

// thousands formats n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// stageOrder and loadStages are the column order of WriteStageTable: the pipeline process's
// stages as events flow and its runtime, then what the load generator's process spends.
var (
	stageOrder = []string{"collector", "enricher", "aggregator", "alerter", "outcomes", "nats", StageOther}
	loadStages = []string{StageLoad, StageBench, StageLoadRuntime}
)

// WriteStageTable writes the CPU per event of every stage, one row per run that has a
// profile; a stage column appears when some run spent CPU in it. The column "tokenmeter" sums
// the pipeline process's stages; the load generator's process follows.
func WriteStageTable(w io.Writer, results []Result) error {
	used := map[string]bool{}
	for _, r := range results {
		for _, s := range r.Stages {
			used[s.Stage] = true
		}
	}
	if len(used) == 0 {
		return nil
	}
	pick := func(order []string) []string {
		var cols []string
		for _, s := range order {
			if used[s] {
				cols = append(cols, s)
				delete(used, s)
			}
		}
		return cols
	}
	cols := pick(stageOrder)
	load := pick(loadStages)
	for s := range used { // a pipeline stage this table does not know yet, last of them
		cols = append(cols, s)
	}
	var b strings.Builder
	b.WriteString("| CPU µs/event | " + strings.Join(cols, " | ") + " | **tokenmeter** |")
	for _, c := range load {
		b.WriteString(" " + c + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(cols)+1+len(load)) + "\n")
	for _, r := range results {
		if r.Stages == nil {
			continue
		}
		by := map[string]time.Duration{}
		for _, s := range r.Stages {
			by[s.Stage] = s.CPU
		}
		b.WriteString("| " + runName(r))
		var sum time.Duration
		for _, c := range cols {
			sum += by[c]
			b.WriteString(" | " + us(perEvent(by[c], r.Events)))
		}
		b.WriteString(" | " + us(perEvent(sum, r.Events)))
		for _, c := range load {
			b.WriteString(" | " + us(perEvent(by[c], r.Events)))
		}
		b.WriteString(" |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
