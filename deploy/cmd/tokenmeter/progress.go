package main

import (
	"fmt"
	"io"
	"time"
)

// progressEvery is the least time between two progress lines.
const progressEvery = time.Second

// progress reports how far a long-running command is ("tokenmeter send", "rerate"): done
// and total units, the rate so far, and the time left at that rate, one line at most every
// progressEvery, then a final line. The clock is injected so tests can assert exact lines.
// It is not safe for concurrent use.
type progress struct {
	w           io.Writer
	what, unit  string
	total, done int64
	now         func() time.Time
	start, last time.Time
}

// newProgress starts the clock of a task of total units. A quiet command passes io.Discard.
func newProgress(w io.Writer, now func() time.Time, what, unit string, total int64) *progress {
	t := now()
	return &progress{w: w, what: what, unit: unit, total: total, now: now, start: t, last: t}
}

// Add counts n more units done, and prints a line when the last one (or the start) is at
// least progressEvery ago.
func (p *progress) Add(n int64) {
	p.done += n
	t := p.now()
	if t.Sub(p.last) < progressEvery {
		return
	}
	p.last = t
	elapsed := t.Sub(p.start)
	line := fmt.Sprintf("%s: %d/%d %s", p.what, p.done, p.total, p.unit)
	if p.total > 0 {
		line += fmt.Sprintf(" (%d%%)", p.done*100/p.total)
	}
	line += ", " + rate(p.done, elapsed, p.unit)
	if left := p.total - p.done; left > 0 && p.done > 0 {
		eta := time.Duration(float64(elapsed) * float64(left) / float64(p.done))
		line += ", ETA " + eta.Round(time.Second).String()
	}
	fmt.Fprintln(p.w, line)
}

// Finish prints the final line: what was done, in how long, at what rate.
func (p *progress) Finish() {
	elapsed := p.now().Sub(p.start)
	fmt.Fprintf(p.w, "%s: %d/%d %s in %s, %s\n", p.what, p.done, p.total, p.unit, elapsed.Round(10*time.Millisecond), rate(p.done, elapsed, p.unit))
}

// rate formats n units over d per second: whole units from 10 on, two significant digits
// below (a slow rate of big units, or a short run).
func rate(n int64, d time.Duration, unit string) string {
	if d <= 0 {
		return "- " + unit + "/s"
	}
	v := float64(n) / d.Seconds()
	if v > 0 && v < 10 {
		return fmt.Sprintf("%.2g %s/s", v, unit)
	}
	return fmt.Sprintf("%.0f %s/s", v, unit)
}
