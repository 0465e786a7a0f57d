// Package reload holds what every stage does the same way when it puts a changed
// configuration file in force while it runs: a version is told by its content (a file touched
// or rewritten the same is not reloaded), a version that does not load is refused and reported
// once — not at every poll — while the one in force stays, and returning to the content in force
// ends the refusal without a reload.
//
// A stage reads the file (or directory) at every poll, names its content with a key (Key of
// the bytes, or a sum the reader computes), and asks its Version what to do:
//
//	switch v.Check(key) {
//	case reload.Unchanged: // nothing to do
//	case reload.Refused:   // the version refused last time: stay quiet
//	case reload.Changed:   // parse; on success v.Accept(key), else v.Refuse(key) and report
//	}
package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// Outcome is what Check says of a content.
type Outcome int

const (
	// Unchanged: the content in force.
	Unchanged Outcome = iota
	// Refused: the content refused last, already reported.
	Refused
	// Changed: a content to load.
	Changed
)

// Version is the content in force of one file or directory and the one last refused. The
// zero value has nothing in force. It is safe for concurrent use; a stage that must not load
// one file twice at once serialises its reloads itself.
type Version struct {
	mu              sync.Mutex
	loaded, refused string
	hasRefused      bool
}

// Key names content by its SHA-256, so that a Version does not keep a copy of the file.
func Key(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// ErrorKey names a read that failed, so that the same failure is reported once.
func ErrorKey(err error) string { return "error: " + err.Error() }

// Check says what key is: the content in force (which also ends a refusal: the file was put
// back), the content refused last, or a change to load.
func (v *Version) Check(key string) Outcome {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case key == v.loaded:
		v.hasRefused = false
		return Unchanged
	case v.hasRefused && key == v.refused:
		return Refused
	}
	return Changed
}

// Accept records key as the content in force.
func (v *Version) Accept(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.loaded, v.refused, v.hasRefused = key, "", false
}

// Refuse records key as refused: Check answers Refused for it until another content comes.
func (v *Version) Refuse(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.refused, v.hasRefused = key, true
}

// Healthy reports whether no refused content is waiting: the file says what is in force.
func (v *Version) Healthy() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return !v.hasRefused
}

// Poll calls each of reloads every interval until ctx ends. A reload reports its own
// outcome (logs, metrics); Poll only keeps time.
func Poll(ctx context.Context, every time.Duration, reloads ...func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, r := range reloads {
				r()
			}
		}
	}
}
