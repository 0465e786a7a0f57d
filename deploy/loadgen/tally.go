package loadgen

import "github.com/tokenmeter/tokenmeter/schemas/event"

// Tally is the expected outcome of sending a set of items, for a test to compare with what the
// pipeline reports. Feed it exactly the items that were sent (retries of a body once); the
// zero value is ready to use.
type Tally struct {
	// Sent counts the items per kind, as the generator labelled them.
	Valid, Duplicates, Invalid int
	// UnknownModel counts the unique events naming UnknownModel, which are stored unpriced.
	UnknownModel int

	seen   map[string]struct{}
	events []event.Usage
}

// Add records sent items.
func (t *Tally) Add(items ...Item) {
	if t.seen == nil {
		t.seen = make(map[string]struct{})
	}
	for i := range items {
		it := &items[i]
		switch it.Kind {
		case Valid:
			t.Valid++
		case Duplicate:
			t.Duplicates++
		case Invalid:
			t.Invalid++
			continue
		}
		// A duplicate whose original was not sent is the first copy the receiver sees, so
		// uniqueness is decided by id, not by kind.
		if _, dup := t.seen[it.Event.ID]; dup {
			continue
		}
		t.seen[it.Event.ID] = struct{}{}
		t.events = append(t.events, it.Event)
		if it.Event.Model == UnknownModel {
			t.UnknownModel++
		}
	}
}

// Accepted is how many events a collector accepts: every valid event, duplicates included,
// since de-duplication happens downstream.
func (t *Tally) Accepted() int { return t.Valid + t.Duplicates }

// Rejected is how many events a collector rejects.
func (t *Tally) Rejected() int { return t.Invalid }

// Events returns the unique valid events in the order they were first sent: what must end up
// stored, each exactly once. The slice is the tally's own; do not modify it.
func (t *Tally) Events() []event.Usage { return t.events }
