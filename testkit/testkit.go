// Package testkit holds what tokenmeter's tests share beyond a real NATS (natstest) and a real
// ClickHouse (chtest): waiting for a condition instead of sleeping, and a log sink to read back.
package testkit

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// Eventually checks cond every 10 ms until it holds, failing the test after timeout with what
// it was waiting for. Tests wait with it, never with a sleep, so that a busy machine only makes
// them slower, not wrong.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// EventuallyEquals checks got every 10 ms until it returns want, failing the test after
// timeout with what it was waiting for and the last value got returned.
func EventuallyEquals[T comparable](tb testing.TB, timeout time.Duration, what string, want T, got func() T) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		last := got()
		if last == want {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %v after %s, want %v", what, last, timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SyncBuffer is a bytes.Buffer that a logger and a test may use at once: a log sink to
// read back what a component logged.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
