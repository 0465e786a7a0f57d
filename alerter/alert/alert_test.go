package alert

import (
	"testing"
	"time"
)

func TestStateMachine(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	a := &Alert{State: Inactive}
	steps := []struct {
		sig   Signal
		sec   int
		want  State
		moved bool
	}{
		{Elevated, 0, Inactive, false},
		{Met, 10, Pending, true},
		{Met, 20, Pending, false},
		{Cleared, 30, Inactive, true}, // pending that goes away never fires
		{Met, 40, Pending, true},
		{Held, 50, Firing, true},
		{Cleared, 60, Firing, false},  // keep_firing_for (30s) starts
		{Elevated, 70, Firing, false}, // not cleared: the clock restarts
		{Cleared, 80, Firing, false},
		{Cleared, 100, Firing, false},
		{Cleared, 110, Resolved, true}, // 30s after 80
		{Cleared, 120, Resolved, false},
		{Held, 130, Firing, true}, // a new life
	}
	for _, s := range steps {
		tr, moved := a.Step(s.sig, at(s.sec), 30*time.Second)
		if a.State != s.want || moved != s.moved {
			t.Fatalf("at %ds signal %d: state %s moved %v, want %s moved %v", s.sec, s.sig, a.State, moved, s.want, s.moved)
		}
		if moved && (tr.To != s.want || !tr.At.Equal(at(s.sec)) || !a.Since.Equal(at(s.sec))) {
			t.Fatalf("at %ds: transition %+v, since %s", s.sec, tr, a.Since)
		}
	}
	if !a.FiredAt.Equal(at(130)) || !a.ActiveAt.Equal(at(130)) {
		t.Errorf("fired at %s, active at %s; want both 130s", a.FiredAt, a.ActiveAt)
	}
}

func TestFingerprintIsStableAndOrderFree(t *testing.T) {
	a := Fingerprint(map[string]string{"alertname": "team_spike", "team": "search", "severity": "page"})
	b := Fingerprint(map[string]string{"severity": "page", "team": "search", "alertname": "team_spike"})
	if a != b || len(a) != 16 {
		t.Errorf("fingerprints %s and %s", a, b)
	}
	// A value that contains the separator of another pair must not collide.
	if Fingerprint(map[string]string{"a": "b", "c": "d"}) == Fingerprint(map[string]string{"a": "b\xffc\xffd"}) {
		t.Error("label sets collide")
	}
	if Fingerprint(map[string]string{"team": "x"}) == Fingerprint(map[string]string{"team": "y"}) {
		t.Error("different values, same fingerprint")
	}
}
