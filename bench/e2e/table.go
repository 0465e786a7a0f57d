package e2e

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteTable writes the results as a Markdown table, one row per run, to paste into the
// README. A dash marks what a run does not measure.
func WriteTable(w io.Writer, results []Result) error {
	var b strings.Builder
	b.WriteString("| run | events | events/s | intake events/s | accepted→queryable p50 / p99 | HTTP p50 / p99 | CPU µs/event tokenmeter | CPU µs/event ClickHouse | peak RSS |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		name := r.Name
		if r.Rate > 0 {
			name += " @ " + thousands(int64(r.Rate)) + "/s"
		}
		queryable, httpLat := "–", "–"
		if r.Queryable.N > 0 {
			queryable = fmt.Sprintf("%s / %s ms (n=%d)", ms(r.Queryable.P50), ms(r.Queryable.P99), r.Queryable.N)
		}
		if r.HTTP.N > 0 {
			httpLat = fmt.Sprintf("%s / %s ms", ms(r.HTTP.P50), ms(r.HTTP.P99))
		}
		ch := "–"
		if r.ClickHouseKnown {
			ch = us(r.ClickHouseCPUPerEvent())
		}
		rss := strconv.FormatInt(r.PeakRSS>>20, 10) + " MiB"
		if !r.PeakRSSOfRun {
			rss += " (process)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			name, thousands(int64(r.Events)), thousands(int64(r.EventsPerSecond())), thousands(int64(r.IntakePerSecond())),
			queryable, httpLat, us(r.CPUPerEvent()), ch, rss)
	}
	_, err := io.WriteString(w, b.String())
	return err
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

// stageOrder is the column order of WriteStageTable: the pipeline's stages as events flow,
// then what the benchmark and the runtime add.
var stageOrder = []string{"collector", "enricher", "aggregator", "alerter", "outcomes", "nats", StageLoad, StageBench, StageOther}

// WriteStageTable writes the CPU per event of every stage, one row per run that has a
// profile; a stage column appears when some run spent CPU in it.
func WriteStageTable(w io.Writer, results []Result) error {
	used := map[string]bool{}
	for _, r := range results {
		for _, s := range r.Stages {
			used[s.Stage] = true
		}
	}
	var cols []string
	for _, s := range stageOrder {
		if used[s] {
			cols = append(cols, s)
			delete(used, s)
		}
	}
	for s := range used { // a stage this table does not know yet, at the end
		cols = append(cols, s)
	}
	if len(cols) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("| CPU µs/event | " + strings.Join(cols, " | ") + " | all |\n|---|" + strings.Repeat("---:|", len(cols)+1) + "\n")
	for _, r := range results {
		if r.Stages == nil {
			continue
		}
		by := map[string]time.Duration{}
		var all time.Duration
		for _, s := range r.Stages {
			by[s.Stage] = s.CPU
			all += s.CPU
		}
		name := r.Name
		if r.Rate > 0 {
			name += " @ " + thousands(int64(r.Rate)) + "/s"
		}
		b.WriteString("| " + name)
		for _, c := range cols {
			b.WriteString(" | " + us(perEvent(by[c], r.Events)))
		}
		b.WriteString(" | " + us(perEvent(all, r.Events)) + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
