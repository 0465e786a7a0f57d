package reload

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// A file's versions as a stage meets them: loaded, touched, broken (reported once, however
// often it is polled), broken differently (reported again), put back (healthy, no reload), and
// changed for good.
func TestVersion(t *testing.T) {
	var v Version
	good, broken, other, fixed := Key([]byte("a: 1")), Key([]byte("a: x")), ErrorKey(errors.New("no such file")), Key([]byte("a: 2"))
	step := func(key string, want Outcome) {
		t.Helper()
		if got := v.Check(key); got != want {
			t.Fatalf("Check = %d, want %d", got, want)
		}
	}
	step(good, Changed)
	v.Accept(good)
	step(good, Unchanged)
	step(broken, Changed)
	v.Refuse(broken)
	if v.Healthy() {
		t.Error("healthy with a refused content waiting")
	}
	step(broken, Refused)
	step(broken, Refused)
	step(other, Changed)
	v.Refuse(other)
	step(other, Refused)
	step(good, Unchanged)
	if !v.Healthy() {
		t.Error("not healthy after the content in force came back")
	}
	step(broken, Changed) // broken again after a recovery: reported again
	step(fixed, Changed)
	v.Accept(fixed)
	step(fixed, Unchanged)
	if Key([]byte("a: 1")) != good || Key([]byte("a: 1 ")) == good {
		t.Error("Key does not name content")
	}
}

func TestPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var a, b atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		Poll(ctx, time.Millisecond, func() { a.Add(1) }, func() {
			if b.Add(1) == 3 {
				cancel()
			}
		})
	}()
	<-done
	if a.Load() != 3 || b.Load() != 3 {
		t.Errorf("polled %d and %d times, want 3 each (until the context ended)", a.Load(), b.Load())
	}
}
