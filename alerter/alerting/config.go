package alerting

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/alerter/detect"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/chconfig"
)

// Defaults.
const (
	DefaultClickHouseDSN  = chconfig.DefaultDSN
	DefaultDatabase       = chconfig.DefaultDatabase
	DefaultEvalInterval   = time.Second
	DefaultReloadInterval = 5 * time.Second
	// DefaultReplay is how much of the enriched batches' copies in USAGE_HISTORY the alerter
	// reads again at start-up to rebuild its newest minutes exactly; older history comes from
	// ClickHouse. A history sized below this much traffic shortens the replay.
	DefaultReplay = 15 * time.Minute
)

// Config configures the alerter. Zero values take the defaults.
type Config struct {
	// RulesFile is the YAML rules file, reloaded when it changes; "" runs the built-in rules
	// with no receivers (alerts are kept and recorded, nobody is notified).
	RulesFile     string
	ClickHouseDSN string
	Database      string
	// SilenceToken, when set, is the bearer token that creating or expiring a silence
	// through the API needs (SilenceHandler).
	SilenceToken string
	// EvalInterval is how often rules are evaluated and notifications flushed.
	EvalInterval time.Duration
	// ReloadInterval is how often the rules file is checked for changes.
	ReloadInterval time.Duration
	// Lateness: a minute counts as complete this long after it ends.
	Lateness time.Duration
	// Replay: see DefaultReplay.
	Replay time.Duration
	// SeenMaxBytes bounds the memory of the ids and responses remembered to count copies
	// once (default DefaultSeenMaxBytes; negative: unbounded): past it the window shortens,
	// never below MinSeenWindow.
	SeenMaxBytes int64
	// LiveMaxPending is how many batches the live consumer may hold back in USAGE_ENRICHED
	// before the alerter lets go of them and reads their copies in USAGE_HISTORY; LiveInactive
	// is how long a stopped alerter's live consumer holds them (feed.go).
	LiveMaxPending int
	LiveInactive   time.Duration
	Streams        stream.Options
	// HTTPClient sends notifications (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now); Sleep waits between notification retries.
	Now        func() time.Time
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// WithDefaults fills the zero values.
func (c Config) WithDefaults() Config {
	if c.ClickHouseDSN == "" {
		c.ClickHouseDSN = DefaultClickHouseDSN
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.EvalInterval == 0 {
		c.EvalInterval = DefaultEvalInterval
	}
	if c.ReloadInterval == 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	if c.Lateness == 0 {
		c.Lateness = detect.DefaultLateness
	}
	if c.Replay == 0 {
		c.Replay = DefaultReplay
	}
	if c.SeenMaxBytes == 0 {
		c.SeenMaxBytes = DefaultSeenMaxBytes
	}
	if c.LiveMaxPending == 0 {
		c.LiveMaxPending = DefaultLiveMaxPending
	}
	if c.LiveInactive == 0 {
		c.LiveInactive = DefaultLiveInactive
	}
	if c.Streams == (stream.Options{}) {
		c.Streams = stream.DefaultOptions
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, chconfig.Check(c.ClickHouseDSN, c.Database))
	if c.EvalInterval < 10*time.Millisecond || c.EvalInterval > time.Minute {
		errs = append(errs, fmt.Errorf("-eval-interval (%s) must be within [10ms, 1m]", c.EvalInterval))
	}
	if c.ReloadInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("-reload-interval (%s) must be at least 10ms", c.ReloadInterval))
	}
	if c.Lateness < 0 || c.Lateness > 10*time.Minute {
		errs = append(errs, fmt.Errorf("lateness (%s) must be within [0, 10m]", c.Lateness))
	}
	if c.Replay < time.Minute || c.Replay > 24*time.Hour {
		errs = append(errs, fmt.Errorf("replay (%s) must be within [1m, 24h]", c.Replay))
	}
	if c.LiveMaxPending < 4 {
		errs = append(errs, fmt.Errorf("live max pending (%d) must be at least 4", c.LiveMaxPending))
	}
	if c.LiveInactive < time.Second {
		errs = append(errs, fmt.Errorf("live inactive (%s) must be at least 1s", c.LiveInactive))
	}
	if c.Streams.Storage != jetstream.FileStorage && c.Streams.Storage != jetstream.MemoryStorage {
		errs = append(errs, fmt.Errorf("stream storage %v is neither file nor memory", c.Streams.Storage))
	}
	if err := c.Streams.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
