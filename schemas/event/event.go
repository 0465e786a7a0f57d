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
	// Estimated marks a call whose usage nobody measured: the provider billed it, or may
	// have, but its answer carried no usage (a stream cut off, a client gone, an upstream
	// timeout, an OpenAI stream without include_usage, an error event after generation
	// began). Its token counts are estimates (the proxy's: input from the request's text,
	// output from the text streamed before the end; see collector/proxy). A measured report
	// of the same call always outranks an estimated one, whoever sent either, so the flag can
	// only lower the report that carries it. EstimateReason says why, one of the
	// Estimate* reasons, and is set only on an estimated event.
	Estimated      bool   `json:"estimated,omitempty"`
	EstimateReason string `json:"estimate_reason,omitempty"`
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

// Why a call's usage was estimated (Usage.EstimateReason).
const (
	// EstimateCutStream: the upstream broke the response off before its usage.
	EstimateCutStream = "cut_stream"
	// EstimateClientGone: the client hung up after its request was sent upstream.
	EstimateClientGone = "client_gone"
	// EstimateUpstreamTimeout: the upstream took the request and did not answer in time.
	EstimateUpstreamTimeout = "upstream_timeout"
	// EstimateNoUsage: the response ended normally without its usage (an OpenAI stream
	// without stream_options.include_usage, an unreadable usage).
	EstimateNoUsage = "no_usage"
	// EstimateUpstreamError: the upstream failed after generation began (an error event in a
	// stream answered 200, a connection broken after the request was sent).
	EstimateUpstreamError = "upstream_error"
)

// EstimateReasons are the valid values of Usage.EstimateReason.
var EstimateReasons = []string{EstimateCutStream, EstimateClientGone, EstimateUpstreamTimeout, EstimateNoUsage, EstimateUpstreamError}
