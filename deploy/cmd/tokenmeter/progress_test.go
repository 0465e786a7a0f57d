package main

import (
	"bytes"
	"testing"
	"time"
)

// ticker is a clock that moves step further on every reading.
func ticker(step time.Duration) func() time.Time {
	t := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(step)
		return t
	}
}

// Lines come at most once a second, each with done/total, the share, the rate and the time
// left; the final line always comes.
func TestProgress(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, ticker(400*time.Millisecond), "send", "events", 1000)
	for range 10 {
		p.Add(100)
	}
	p.Finish()
	// The clock moves 0.4 s per reading: lines after Add 3, 6 and 9 (1.2, 2.4 and 3.6 s after
	// the start, 1.2 s after the last line), the final line 4.4 s after the start.
	want := "send: 300/1000 events (30%), 250 events/s, ETA 3s\n" +
		"send: 600/1000 events (60%), 250 events/s, ETA 2s\n" +
		"send: 900/1000 events (90%), 250 events/s, ETA 0s\n" +
		"send: 1000/1000 events in 4.4s, 227 events/s\n"
	if out.String() != want {
		t.Errorf("progress:\n%s\nwant:\n%s", out.String(), want)
	}
}

// Edge cases: nothing to do, no time passing, more done than announced.
func TestProgressEdges(t *testing.T) {
	f := func(step time.Duration, total int64, adds []int64, want string) {
		t.Helper()
		var out bytes.Buffer
		p := newProgress(&out, ticker(step), "rerate", "events", total)
		for _, n := range adds {
			p.Add(n)
		}
		p.Finish()
		if out.String() != want {
			t.Errorf("progress:\n%s\nwant:\n%s", out.String(), want)
		}
	}
	f(time.Second, 0, nil, "rerate: 0/0 events in 1s, 0 events/s\n")
	f(0, 10, []int64{5, 5}, "rerate: 10/10 events in 0s, - events/s\n")
	f(2*time.Second, 0, []int64{7}, "rerate: 7/0 events, 3.5 events/s\nrerate: 7/0 events in 4s, 1.8 events/s\n")
	f(time.Second, 10, []int64{0}, "rerate: 0/10 events (0%), 0 events/s\nrerate: 0/10 events in 2s, 0 events/s\n")
	f(time.Second, 4, []int64{6}, "rerate: 6/4 events (150%), 6 events/s\nrerate: 6/4 events in 2s, 3 events/s\n")
}
