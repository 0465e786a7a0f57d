package collect

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Defaults applied to the zero values of Config.
const (
	DefaultAddr           = "127.0.0.1:8080"
	DefaultMaxBodyBytes   = 16 << 20
	DefaultMaxEvents      = 10_000
	DefaultPublishTimeout = 5 * time.Second
	// DefaultMaxBodies is how many request bodies are read at once; each may hold up to
	// MaxBodyBytes once it has arrived.
	DefaultMaxBodies = 256
	// DefaultBodyTimeout is how long a body may take to arrive: 16 MiB at 2.3 Mbit/s.
	DefaultBodyTimeout = time.Minute
)

// MaxPartitions bounds Config.Partitions; more partitions than this is a typo, not a plan.
const MaxPartitions = 1024

// Config configures the collector. Zero values take the documented defaults.
type Config struct {
	// Addr is the HTTP listen address (default DefaultAddr); ":0" picks a free port, which
	// Collector.Addr reports once Run listens.
	Addr string
	// Partitions is the number of USAGE_RAW partitions (default stream.DefaultPartitions).
	// Every stage must use the same number.
	Partitions int
	// MaxBodyBytes bounds a request body (default 16 MiB); a larger one is answered 413.
	MaxBodyBytes int64
	// MaxEvents bounds the events of one body (default 10,000); more are answered 413.
	MaxEvents int
	// MaxBodies bounds the request bodies read at once (default DefaultMaxBodies); a request
	// beyond it is answered 503 with Retry-After, unread. BodyTimeout bounds the time a body
	// may take to arrive (default DefaultBodyTimeout); a slower one is answered 408.
	MaxBodies   int
	BodyTimeout time.Duration
	// Limits bound each event (default event.DefaultLimits when the zero value).
	Limits event.Limits
	// PublishTimeout bounds the wait for JetStream's acknowledgements of one request
	// (default 5 s); past it the request is answered 503.
	PublishTimeout time.Duration
	// Streams sizes the streams that Run ensures (default stream.DefaultOptions when the
	// zero value).
	Streams stream.Options
	// Registerer receives the collector's metrics (default a private registry).
	Registerer prometheus.Registerer
	// Gatherer serves /metrics (default Registerer when it is also a Gatherer).
	Gatherer prometheus.Gatherer
	// Logger receives the collector's logs (default discards them).
	Logger *slog.Logger
	// Budgets, when set, refuses or flags the events of scopes over a budget hard cap.
	Budgets *budget.Enforcer
	// KeysFile, when set, is the API-key registry (collector/keys): every request to
	// /v1/events, /v1/traces and /v1/outcomes must carry one of its keys (Authorization:
	// Bearer <key> or X-Tokenmeter-Key), and the key's bound tags are applied to its events.
	// Without it requests are not authenticated, which is only for trusted networks.
	KeysFile string
	// TagPolicyFile, when set, is the required-tags policy (see TagPolicy).
	TagPolicyFile string
	// FilePoll is how often KeysFile and TagPolicyFile are checked for changes (default
	// DefaultFilePoll).
	FilePoll time.Duration
}

// withDefaults returns cfg with every zero value replaced by its default.
func (cfg Config) withDefaults() Config {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = stream.DefaultPartitions
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxEvents == 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.Limits == (event.Limits{}) {
		cfg.Limits = event.DefaultLimits
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.MaxBodies == 0 {
		cfg.MaxBodies = DefaultMaxBodies
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Streams == (stream.Options{}) {
		cfg.Streams = stream.DefaultOptions
	}
	if cfg.Streams.Partitions == 0 {
		cfg.Streams.Partitions = cfg.Partitions
	}
	if cfg.Registerer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	if cfg.Gatherer == nil {
		if g, ok := cfg.Registerer.(prometheus.Gatherer); ok {
			cfg.Gatherer = g
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FilePoll == 0 {
		cfg.FilePoll = DefaultFilePoll
	}
	return cfg
}

// Validate reports every invalid value of cfg, after defaults are applied to zero values.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.Partitions < 1 || cfg.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("-partitions (%d) must be within [1, %d]", cfg.Partitions, MaxPartitions))
	}
	if cfg.MaxBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("-max-body-bytes (%d) must be positive", cfg.MaxBodyBytes))
	}
	if cfg.MaxEvents < 1 {
		errs = append(errs, fmt.Errorf("-max-events (%d) must be positive", cfg.MaxEvents))
	}
	if cfg.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("-publish-timeout (%s) must be positive", cfg.PublishTimeout))
	}
	if cfg.MaxBodies < 1 {
		errs = append(errs, fmt.Errorf("-max-bodies (%d) must be positive", cfg.MaxBodies))
	}
	if cfg.BodyTimeout < 0 {
		errs = append(errs, fmt.Errorf("-body-timeout (%s) must be positive", cfg.BodyTimeout))
	}
	errs = append(errs, validateLimits(cfg.Limits)...)
	if cfg.Streams.Replicas < 1 {
		errs = append(errs, fmt.Errorf("-stream-replicas (%d) must be positive", cfg.Streams.Replicas))
	}
	if err := cfg.Streams.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.FilePoll < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("-file-poll (%s) must be at least 10ms", cfg.FilePoll))
	}
	if cfg.Gatherer == nil {
		errs = append(errs, fmt.Errorf("gatherer is nil and the registerer (%T) is not a prometheus.Gatherer", cfg.Registerer))
	}
	return errors.Join(errs...)
}

// validateLimits is shared in spirit with the emitter's: every bound must be positive, or
// every event would be rejected.
func validateLimits(l event.Limits) []error {
	var errs []error
	for _, f := range [...]struct {
		name string
		v    int64
	}{
		{"limits.max_future", int64(l.MaxFuture)}, {"limits.max_age", int64(l.MaxAge)},
		{"limits.max_tokens", l.MaxTokens}, {"limits.max_tags", int64(l.MaxTags)},
		{"limits.max_tag_key", int64(l.MaxTagKey)}, {"limits.max_tag_value", int64(l.MaxTagValue)},
		{"limits.max_id", int64(l.MaxID)}, {"limits.max_string", int64(l.MaxString)},
	} {
		if f.v <= 0 {
			errs = append(errs, fmt.Errorf("%s (%d) must be positive", f.name, f.v))
		}
	}
	return errs
}
