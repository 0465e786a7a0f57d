// Package event defines the v1 usage event — the contract between the services that report AI
// usage and tokenmeter — together with its validation rules and its wire decoders.
package event

import "time"

// Usage is one priced-or-priceable call to an AI provider (DESIGN.md §2.1).
type Usage struct {
	// ID is the idempotency key: the same id sent twice is counted once.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Provider and Model are as the provider reports them; the enricher maps aliases.
	Provider  string `json:"provider"`
	Model     string `json:"model"`
	Operation string `json:"operation,omitempty"`
	Usage     Tokens `json:"usage"`
	// Units are the call's charges that are not text tokens (web searches, images, audio
	// tokens, request fees); nil when it has none.
	Units Units `json:"units,omitempty"`
	// ServiceTier decides the price: standard (default), batch, flex or priority.
	ServiceTier string `json:"service_tier,omitempty"`
	// ResponseID is the provider's own id for the response (chatcmpl-…, msg_…).
	ResponseID string `json:"response_id,omitempty"`
	// Status is "ok" (default) or the short error class of a failed call.
	Status    string `json:"status,omitempty"`
	LatencyMS int64  `json:"latency_ms,omitempty"`
	// Tags attribute the cost; see the well-known Tag* keys.
	Tags          map[string]string `json:"tags,omitempty"`
	WorkflowID    string            `json:"workflow_id,omitempty"`
	PromptVersion string            `json:"prompt_version,omitempty"`
	// CacheHit marks a call answered by the application's own cache: it costs nothing, and
	// what it would have cost is recorded as savings.
	CacheHit bool `json:"cache_hit,omitempty"`
}

// Tokens follows OpenAI's and OpenTelemetry's convention: InputTokens counts all prompt
// tokens, cached and cache-write ones included, and OutputTokens counts all output tokens,
// reasoning ones included. CachedInput and CacheWrite are parts of Input, CacheWrite1h is the
// part of CacheWrite written with a one-hour lifetime, and Reasoning is part of Output.
type Tokens struct {
	Input        int64 `json:"input_tokens"`
	Output       int64 `json:"output_tokens"`
	CachedInput  int64 `json:"cached_input_tokens,omitempty"`
	CacheWrite   int64 `json:"cache_write_tokens,omitempty"`
	CacheWrite1h int64 `json:"cache_write_1h_tokens,omitempty"`
	Reasoning    int64 `json:"reasoning_tokens,omitempty"`
}

// Well-known tag keys. They become their own ClickHouse columns; any other key is kept in
// the event's extra tags.
const (
	TagTeam       = "team"
	TagFeature    = "feature"
	TagEnv        = "env"
	TagCostCenter = "cost_center"
	TagTraffic    = "traffic"
)

// Service tiers as providers report them.
const (
	TierStandard = "standard"
	TierBatch    = "batch"
	TierFlex     = "flex"
	TierPriority = "priority"
)

// StatusOK is the status of a successful call, and the default.
const StatusOK = "ok"
