// Package alert is the life of one alert as an explicit state machine:
//
//	inactive ──condition──▶ pending ──held for `for`──▶ firing ──cleared for keep_firing_for──▶ resolved
//	    ▲                      │                           ▲  │
//	    └──────condition gone──┘                           └──┘ condition back before keep_firing_for ends
//
// A `for` of 0 goes from inactive straight to firing. A resolved alert whose condition comes
// back starts a new life (pending or firing), with a new notification.
package alert

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"sort"
	"time"
)

// State is where an alert is in its life.
type State string

// States.
const (
	Inactive State = "inactive"
	Pending  State = "pending"
	Firing   State = "firing"
	Resolved State = "resolved"
)

// Signal is what an evaluation says about the alert's condition.
type Signal int

// Signals, from the detector's verdicts.
const (
	// Cleared: the resolve condition holds.
	Cleared Signal = iota
	// Elevated: the condition does not hold, but the resolve condition does not either.
	Elevated
	// Met: the condition holds, but not yet for `for`.
	Met
	// Held: the condition has held for `for`.
	Held
)

// Alert is one alert: a rule and the label set of the group it fired for.
type Alert struct {
	Fingerprint string
	Rule        string
	Labels      map[string]string
	State       State
	// Since is when the alert entered its current state.
	Since time.Time
	// ActiveAt is when the current life began (pending or firing); FiredAt when it fired.
	ActiveAt, FiredAt time.Time
	// ClearedSince is when the resolve condition started holding while firing; zero when it
	// does not hold.
	ClearedSince time.Time
	// Value, Level and Baseline are from the latest evaluation, in the measure's unit.
	Value, Level, Baseline int64
	Summary                string
	Updated                time.Time
}

// Transition is a change of state, for history and notification.
type Transition struct {
	From, To State
	At       time.Time
}

// Step applies one evaluation at now. It returns the transition, if any.
func (a *Alert) Step(s Signal, now time.Time, keepFiringFor time.Duration) (Transition, bool) {
	from := a.State
	switch a.State {
	case Inactive, Resolved, "":
		switch s {
		case Held:
			a.ActiveAt, a.FiredAt = now, now
			a.set(Firing, now)
		case Met:
			a.ActiveAt = now
			a.set(Pending, now)
		}
	case Pending:
		switch s {
		case Held:
			a.FiredAt = now
			a.set(Firing, now)
		case Cleared, Elevated:
			a.set(Inactive, now)
		}
	case Firing:
		if s != Cleared {
			a.ClearedSince = time.Time{}
			break
		}
		if a.ClearedSince.IsZero() {
			a.ClearedSince = now
		}
		if now.Sub(a.ClearedSince) >= keepFiringFor {
			a.ClearedSince = time.Time{}
			a.set(Resolved, now)
		}
	}
	a.Updated = now
	if a.State == from {
		return Transition{}, false
	}
	return Transition{From: from, To: a.State, At: now}, true
}

func (a *Alert) set(s State, now time.Time) {
	a.State, a.Since = s, now
}

// Fingerprint identifies an alert by its label set (alertname included): the same group of
// the same rule always has the same fingerprint, across restarts and processes. It is the
// hex FNV-1a 64 hash of the sorted pairs, each name and value prefixed with its length so
// that no two label sets encode alike.
func Fingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := fnv.New64a()
	var n [binary.MaxVarintLen64]byte
	for _, k := range keys {
		for _, s := range [2]string{k, labels[k]} {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
			h.Write([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
