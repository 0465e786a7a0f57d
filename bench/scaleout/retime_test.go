package scaleout

import (
	"testing"
	"time"
)

// A sustained run's later rounds are new events timed when they are sent: new ids and
// response ids, every time moved forward, nothing else touched.
func TestRoundsAreNewEventsTimedNow(t *testing.T) {
	body := []byte(`{"id":"e1","time":"2026-12-06T12:00:00.5Z","response_id":"resp-1","tags":{"team":"time"}}` + "\n" +
		`{"id":"e2","time":"2026-12-06T23:59:30Z","usage":{"input_tokens":1}}` + "\n")
	got := string(retime(renumber(body, 3), 90*time.Second))
	want := `{"id":"r3-e1","time":"2026-12-06T12:01:30.5Z","response_id":"r3-resp-1","tags":{"team":"time"}}` + "\n" +
		`{"id":"r3-e2","time":"2026-12-07T00:01:00Z","usage":{"input_tokens":1}}` + "\n"
	if got != want {
		t.Errorf("round 3, 90 s in:\n got %s\nwant %s", got, want)
	}
}
