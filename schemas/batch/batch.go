// Package batch is the columnar format that moves usage events between stages: one Arrow
// record batch per JetStream message, serialized as an Arrow IPC stream. The same schema serves
// USAGE_RAW (enrichment columns empty) and USAGE_ENRICHED (filled by the enricher), so the
// enricher fills columns instead of translating formats.
package batch

import (
	"sort"
	"strings"
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

	// Source is who reported the event, set by the stage that authenticated it (never by the
	// reporter): SourceProxy, SourceKey+key name, SourceEmitter+emitter name, or "" for an
	// anonymous report. Of two reports of one call the higher Rank is kept.
	Source string

	// Units are the event's charges that are not text tokens (event.Units), sorted by key;
	// the enricher fills in what each cost. nil when the event has none.
	Units []Unit

	// Estimated and EstimateReason are event.Usage's: the tokens are an estimate, not a
	// measure. A measured report of a call outranks an estimated one (Outranks).
	Estimated      bool
	EstimateReason string
}

// Unit is one key of an event's units: Count units (tokens, for the audio classes) and, once
// priced, their part of CostPico.
type Unit struct {
	Key      string
	Count    int64
	CostPico int64
}

// FromUsage turns a validated, normalized event into a row.
func FromUsage(u *event.Usage, received time.Time, partition int) Row {
	r := Row{
		ID: u.ID, Time: u.Time, Received: received.UTC().Truncate(time.Millisecond), Partition: partition,
		Provider: u.Provider, Model: u.Model, Operation: u.Operation, Tokens: u.Usage,
		ServiceTier: u.ServiceTier, ResponseID: u.ResponseID, Status: u.Status, LatencyMS: u.LatencyMS,
		WorkflowID: u.WorkflowID, PromptVersion: u.PromptVersion, CacheHit: u.CacheHit,
		Estimated: u.Estimated, EstimateReason: u.EstimateReason,
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
	if len(u.Units) > 0 {
		r.Units = make([]Unit, 0, len(u.Units))
		for _, k := range u.Units.SortedKeys() {
			r.Units = append(r.Units, Unit{Key: k, Count: u.Units[k]})
		}
	}
	return r
}

// EventUnits is r's units as event.Units; nil when it has none.
func (r *Row) EventUnits() event.Units {
	if len(r.Units) == 0 {
		return nil
	}
	u := make(event.Units, len(r.Units))
	for _, x := range r.Units {
		u[x.Key] = x.Count
	}
	return u
}

// TierFallback reports whether the row was priced at standard prices although it ran in
// another service tier (batch, flex or priority) — because its model's price row has no
// prices for that tier. The enricher's price version names the tier it used,
// "<provider>/<model>@<effective date>/<tier>[/long][/org|/discount=…]", so the row says so
// without a column of its own: the tier after the first "@YYYY-MM-DD/" differs from
// ServiceTier. usage_events.tier_fallback (migration 0070) is the same test in SQL.
func (r *Row) TierFallback() bool {
	if !r.Priced || r.ServiceTier == "" || r.ServiceTier == event.TierStandard {
		return false
	}
	return PriceTier(r.PriceVersion) != r.ServiceTier
}

// PriceTier is the service tier a price version names: the segment after the first
// "@YYYY-MM-DD/", up to the next "/"; "" when the version has none.
func PriceTier(version string) string {
	const date = len("@2006-01-02/")
	for i := 0; i+date <= len(version); i++ {
		if version[i] != '@' || !isDate(version[i+1:i+date-1]) || version[i+date-1] != '/' {
			continue
		}
		rest := version[i+date:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	return ""
}

// isDate reports whether s has the shape YYYY-MM-DD (digits and dashes).
func isDate(s string) bool {
	for i := 0; i < len(s); i++ {
		if i == 4 || i == 7 {
			if s[i] != '-' {
				return false
			}
		} else if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) == 10
}

// The sources of a report (Row.Source).
const (
	// SourceProxy is the collector's proxy, which read the provider's response itself.
	SourceProxy = "proxy"
	// SourceKey prefixes the name of the API key an HTTP or OTLP report was sent with.
	SourceKey = "key:"
	// SourceEmitter prefixes the name of the emitter whose NATS identity published the report.
	SourceEmitter = "emitter:"
)

// Rank orders sources by how much a report of theirs can be trusted: the proxy saw the
// provider's answer (3); an API key or an emitter's NATS identity authenticates the reporter
// (2); anyone who reaches an open intake can send an anonymous report (0).
func (r *Row) Rank() int {
	switch {
	case r.Source == SourceProxy:
		return 3
	case strings.HasPrefix(r.Source, SourceKey), strings.HasPrefix(r.Source, SourceEmitter):
		return 2
	}
	return 0
}

// Detail is how much a report says about its call: the number of token classes and unit keys
// it counts. Of two reports of one call from sources of equal rank the more detailed is kept
// (an SDK span that splits cache writes over one that does not, a response that counts its web
// searches over one that does not).
func (r *Row) Detail() int {
	n := len(r.Units)
	t := &r.Tokens
	for _, v := range [...]int64{t.Input, t.Output, t.CachedInput, t.CacheWrite, t.CacheWrite1h, t.Reasoning} {
		if v != 0 {
			n++
		}
	}
	return n
}

// Outranks reports whether r is the better of two reports of one call: a measured report
// over an estimated one, whatever their sources (the proxy estimates a call whose answer
// carried no usage, and a later measured report of it replaces the estimate; the flag can
// only lower the report that carries it), then a higher source rank, then the same rank and
// more detail. Of two equal reports the first stays.
func (r *Row) Outranks(o *Row) bool {
	if r.Estimated != o.Estimated {
		return o.Estimated
	}
	if a, b := r.Rank(), o.Rank(); a != b {
		return a > b
	}
	return r.Detail() > o.Detail()
}
