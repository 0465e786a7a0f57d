package e2e

import (
	"fmt"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Workload is pre-generated HTTP traffic: NDJSON bodies of events, so that every valid event
// must land in ClickHouse exactly once. It is read-only once generated and may be sent to any
// number of fresh pipelines.
type Workload struct {
	// Bodies are the request bodies. Sizes[i] is the number of lines in Bodies[i], Accepted[i]
	// how many of them the collector accepts (valid events and copies of earlier ones) and
	// Rejected[i] how many it rejects; Markers[i] is its first valid event with a provider
	// response id, which no earlier body holds (the latency marker).
	Bodies             [][]byte
	Sizes              []int
	Accepted, Rejected []int
	Markers            []Marker
	// Lines is the number of lines in all bodies, Bytes their size; Events is the number of
	// distinct valid events among them — what ClickHouse must hold at the end — and Copies
	// and Invalid the other lines.
	Lines, Events, Copies, Invalid, Bytes int
}

// Marker is an event whose arrival in ClickHouse times a body's latency. It is looked up in
// usage_responses by its provider response: a few index granules, where a lookup by event id
// reads every stored id (see markers.poll).
type Marker struct {
	ID, Provider, ResponseID string
}

// EventRate is how fast the workload's event time advances: events per second of event time,
// averaged over the day. A company that sends the benchmark's rates stamps its events this
// densely; a day's worth of events pressed into a benchmark run (loadgen's default) would make
// every event a roll-up row of its own, which no company at these rates sees.
const EventRate = 200_000

// GeneratorConfig is clean traffic: loadgen's default mix — unknown models, late events —
// with event time advancing at EventRate through the minute before now (a run of more than a
// minute's events goes through that minute again, with new ids), without duplicates or
// invalid events, for runs that count what was accepted (the emitter, bench/scaleout).
func GeneratorConfig(now time.Time, seed uint64) loadgen.Config {
	cfg := loadgen.DefaultConfig(now)
	cfg.Seed = seed
	cfg.Span = time.Minute
	cfg.EventsPerDay = EventRate * 24 * 3600
	cfg.DuplicateShare, cfg.InvalidShare = 0, 0
	return cfg
}

// TrafficConfig is GeneratorConfig with loadgen's default shares of copies (1 %: a client's
// re-send) and invalid events (0.5 %), which the collector rejects line by line: what the
// HTTP measurements send.
func TrafficConfig(now time.Time, seed uint64) loadgen.Config {
	cfg := GeneratorConfig(now, seed)
	def := loadgen.DefaultConfig(now)
	cfg.DuplicateShare, cfg.InvalidShare = def.DuplicateShare, def.InvalidShare
	return cfg
}

// Generate builds a workload of n lines in bodies of batchSize lines (the last may hold
// fewer), from gen (see TrafficConfig).
func Generate(gen loadgen.Config, n, batchSize int) (*Workload, error) {
	if err := gen.Validate(); err != nil {
		return nil, fmt.Errorf("configure the generator: %w", err)
	}
	if n < 1 || batchSize < 1 {
		return nil, fmt.Errorf("generate %d events in bodies of %d: both must be positive", n, batchSize)
	}
	g := loadgen.New(gen)
	w := &Workload{Lines: n}
	items := make([]loadgen.Item, 0, batchSize)
	for sent := 0; sent < n; sent += len(items) {
		items = items[:0]
		var first Marker
		accepted := 0
		for range min(batchSize, n-sent) {
			it := g.Next()
			items = append(items, it)
			switch it.Kind {
			case loadgen.Valid:
				w.Events++
				accepted++
				if first.ID == "" && it.Event.ResponseID != "" {
					first = Marker{ID: it.Event.ID, Provider: it.Event.Provider, ResponseID: it.Event.ResponseID}
				}
			case loadgen.Duplicate:
				w.Copies++
				accepted++
			case loadgen.Invalid:
				w.Invalid++
			}
		}
		if first.ID == "" {
			return nil, fmt.Errorf("generate: body %d holds no new valid event with a response id to time its latency by; send larger bodies",
				len(w.Bodies))
		}
		body := loadgen.NDJSON(items)
		w.Bodies = append(w.Bodies, body)
		w.Sizes = append(w.Sizes, len(items))
		w.Accepted = append(w.Accepted, accepted)
		w.Rejected = append(w.Rejected, len(items)-accepted)
		w.Markers = append(w.Markers, first)
		w.Bytes += len(body)
	}
	return w, nil
}

// GenerateEvents returns n valid, distinct events from gen, for the emitter: gen's copies and
// invalid events are left out (a Go service neither re-sends nor breaks the schema through the
// emitter). With the same config, and no such shares, they are the events of Generate.
func GenerateEvents(gen loadgen.Config, n int) ([]event.Usage, error) {
	gen.DuplicateShare, gen.InvalidShare = 0, 0
	if err := gen.Validate(); err != nil {
		return nil, fmt.Errorf("configure the generator: %w", err)
	}
	g := loadgen.New(gen)
	events := make([]event.Usage, n)
	for i := range events {
		events[i] = g.Next().Event
	}
	return events, nil
}
