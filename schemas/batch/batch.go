// Package batch is the columnar format that moves usage events between stages: one Arrow
// record batch per JetStream message, serialized as an Arrow IPC stream. The same schema serves
// USAGE_RAW (enrichment columns empty) and USAGE_ENRICHED (filled by the enricher), so the
// enricher fills columns instead of translating formats.
package batch

import (
	"sort"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// SchemaName is the value of the stream.HeaderSchema header on messages holding a batch.
const SchemaName = "usage-batch/1"

// Tag is one tag outside the well-known keys.
type Tag struct{ Key, Value string }

// Row is one event as it travels between stages.
type Row struct {
	ID string
	// Time is the event's own time; Received is when the collector or emitter accepted it.
	Time, Received time.Time
	// Partition is the stream partition the event was published to.
	Partition                  int
	Provider, Model, Operation string
	Tokens                     event.Tokens
	ServiceTier, ResponseID    string
	Status                     string
	LatencyMS                  int64
	// The well-known tags, "" when absent; every other tag, sorted by key, in ExtraTags.
	Team, Feature, Env, CostCenter, Traffic string
	ExtraTags                               []Tag
	WorkflowID, PromptVersion               string
	CacheHit                                bool

	// Filled by the enricher.
	Priced       bool
	ModelPriced  string // canonical model the price was found under
	PriceVersion string
	CostPico     int64 // cost in picodollars (1e-12 USD)
	SavingsPico  int64 // cost avoided by provider and application caches
}

// FromUsage turns a validated, normalized event into a row.
func FromUsage(u *event.Usage, received time.Time, partition int) Row {
	r := Row{
		ID: u.ID, Time: u.Time, Received: received.UTC().Truncate(time.Millisecond), Partition: partition,
		Provider: u.Provider, Model: u.Model, Operation: u.Operation, Tokens: u.Usage,
		ServiceTier: u.ServiceTier, ResponseID: u.ResponseID, Status: u.Status, LatencyMS: u.LatencyMS,
		WorkflowID: u.WorkflowID, PromptVersion: u.PromptVersion, CacheHit: u.CacheHit,
	}
	for k, v := range u.Tags {
		switch k {
		case event.TagTeam:
			r.Team = v
		case event.TagFeature:
			r.Feature = v
		case event.TagEnv:
			r.Env = v
		case event.TagCostCenter:
			r.CostCenter = v
		case event.TagTraffic:
			r.Traffic = v
		default:
			r.ExtraTags = append(r.ExtraTags, Tag{k, v})
		}
	}
	sort.Slice(r.ExtraTags, func(i, j int) bool { return r.ExtraTags[i].Key < r.ExtraTags[j].Key })
	return r
}
