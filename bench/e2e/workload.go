package e2e

import (
	"fmt"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Workload is pre-generated HTTP traffic: NDJSON bodies of valid, distinct events, so that
// every event must land in ClickHouse exactly once. It is read-only once generated and may be
// sent to any number of fresh pipelines.
type Workload struct {
	// Bodies are the request bodies; Sizes[i] is the number of events in Bodies[i] and
	// FirstIDs[i] the id of its first event.
	Bodies   [][]byte
	Sizes    []int
	FirstIDs []string
	// Events is the number of events in all bodies, Bytes their size.
	Events, Bytes int
}

// GeneratorConfig is the traffic every measurement sends: loadgen's default mix ending at now,
// without duplicates or invalid events.
func GeneratorConfig(now time.Time, seed uint64) loadgen.Config {
	cfg := loadgen.DefaultConfig(now)
	cfg.Seed = seed
	cfg.DuplicateShare, cfg.InvalidShare = 0, 0
	return cfg
}

// Generate builds a workload of n events in bodies of batchSize events (the last may hold
// fewer), from gen (see GeneratorConfig).
func Generate(gen loadgen.Config, n, batchSize int) (*Workload, error) {
	if err := gen.Validate(); err != nil {
		return nil, fmt.Errorf("configure the generator: %w", err)
	}
	if n < 1 || batchSize < 1 {
		return nil, fmt.Errorf("generate %d events in bodies of %d: both must be positive", n, batchSize)
	}
	if gen.DuplicateShare != 0 || gen.InvalidShare != 0 {
		return nil, fmt.Errorf("generate: duplicate share (%v) and invalid share (%v) must be 0, or not every event lands",
			gen.DuplicateShare, gen.InvalidShare)
	}
	g := loadgen.New(gen)
	w := &Workload{Events: n}
	items := make([]loadgen.Item, 0, batchSize)
	for sent := 0; sent < n; sent += len(items) {
		items = items[:0]
		for range min(batchSize, n-sent) {
			items = append(items, g.Next())
		}
		body := loadgen.NDJSON(items)
		w.Bodies = append(w.Bodies, body)
		w.Sizes = append(w.Sizes, len(items))
		w.FirstIDs = append(w.FirstIDs, items[0].Event.ID)
		w.Bytes += len(body)
	}
	return w, nil
}

// GenerateEvents returns n events from gen, for the emitter. With the same config they are the
// events of Generate.
func GenerateEvents(gen loadgen.Config, n int) ([]event.Usage, error) {
	if err := gen.Validate(); err != nil {
		return nil, fmt.Errorf("configure the generator: %w", err)
	}
	if gen.DuplicateShare != 0 || gen.InvalidShare != 0 {
		return nil, fmt.Errorf("generate: duplicate share (%v) and invalid share (%v) must be 0, or not every event lands",
			gen.DuplicateShare, gen.InvalidShare)
	}
	g := loadgen.New(gen)
	events := make([]event.Usage, n)
	for i := range events {
		events[i] = g.Next().Event
	}
	return events, nil
}
