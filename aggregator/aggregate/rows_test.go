package aggregate

import (
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// TestRoomFor checks that a batch's row array doubles, once, when the next message may not
// fit, never past the limit unless the message needs it, and stays as it is when it fits.
func TestRoomFor(t *testing.T) {
	for _, c := range []struct {
		name                  string
		len, cap, perMsg, lim int
		wantCap               int
	}{
		{"fits", 100, 1000, 250, 20000, 1000},
		{"exactly fits", 750, 1000, 250, 20000, 1000},
		{"doubles", 900, 1000, 250, 20000, 2000},
		{"doubling capped by the limit", 15000, 16000, 1200, 20000, 20000},
		{"past the limit by one message", 19900, 20000, 300, 20000, 20200},
		{"a message larger than the doubled array", 900, 1000, 5000, 20000, 5900},
		{"empty array, first message", 0, 0, 250, 20000, 250},
		{"unknown message size", 0, 0, 0, 20000, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows := make([]batch.Row, c.len, c.cap)
			got := roomFor(rows, c.perMsg, c.lim)
			if len(got) != c.len {
				t.Fatalf("len = %d, want %d", len(got), c.len)
			}
			if cap(got) != c.wantCap {
				t.Fatalf("cap = %d, want %d", cap(got), c.wantCap)
			}
			if c.cap > 0 && c.cap-c.len >= c.perMsg && &got[:1][0] != &rows[:1][0] {
				t.Fatal("the array was copied although the message fits")
			}
		})
	}
}

func TestRowsCap(t *testing.T) {
	if got := rowsCap(16000); got != 20000 {
		t.Fatalf("rowsCap(16000) = %d, want 20000", got)
	}
}
