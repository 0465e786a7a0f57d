package testkit

import (
	"fmt"
	"testing"
	"time"
)

// fakeTB records a failure instead of ending the test, so that the helpers' failures can be
// checked.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	panic(f) // Fatalf does not return
}

func run(fn func(tb testing.TB)) (failed string) {
	f := &fakeTB{}
	defer func() {
		if r := recover(); r != nil && r != any(f) {
			panic(r)
		}
		failed = f.failed
	}()
	fn(f)
	return ""
}

func TestEventually(t *testing.T) {
	n := 0
	if got := run(func(tb testing.TB) { Eventually(tb, time.Minute, "three calls", func() bool { n++; return n == 3 }) }); got != "" || n != 3 {
		t.Errorf("Eventually failed with %q after %d calls, want success at the third", got, n)
	}
	if got, want := run(func(tb testing.TB) { Eventually(tb, 30*time.Millisecond, "never", func() bool { return false }) }), "never: not after 30ms"; got != want {
		t.Errorf("Eventually failed with %q, want %q", got, want)
	}
}

func TestEventuallyEquals(t *testing.T) {
	n := 0
	if got := run(func(tb testing.TB) { EventuallyEquals(tb, time.Minute, "count", 3, func() int { n++; return n }) }); got != "" || n != 3 {
		t.Errorf("EventuallyEquals failed with %q after %d calls, want success at the third", got, n)
	}
	got := run(func(tb testing.TB) {
		EventuallyEquals(tb, 30*time.Millisecond, "rows stored", "3 3", func() string { return "2 3" })
	})
	if want := "rows stored: 2 3 after 30ms, want 3 3"; got != want {
		t.Errorf("EventuallyEquals failed with %q, want %q", got, want)
	}
}
