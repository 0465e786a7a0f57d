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
