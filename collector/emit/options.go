package emit

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/collector/internal/spool"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Defaults applied to the zero values of Options.
const (
	DefaultMaxBuffered    = 100_000
	DefaultBatchSize      = 1000
	DefaultFlushInterval  = 100 * time.Millisecond
	DefaultPublishTimeout = 5 * time.Second
	DefaultMaxBackoff     = 5 * time.Second
)

// Options configure an Emitter. Zero values take the documented defaults.
type Options struct {
	// Name is the emitter's name, the one `tokenmeter nats add-emitter NAME` gave its NATS
	// identity: batches are published on usage.raw.<partition>.<Name>, the only subjects that
	// identity may publish, and the enricher binds them to the tags the operator gave the
	// name (-emitter-bindings). Default: the name Connect read from the seed file's name, else
	// "" — usage.raw.<partition>, for a connection that may publish there (a NATS without
	// identities, or the collector's and the proxy's).
	Name string
	// Source is who reports the events (batch.Row.Source): the pipeline's proxy sets
	// batch.SourceProxy. An emitter with a Name need not set it: the enricher records its
	// events as batch.SourceEmitter+Name whatever they say, so no service can claim the
	// proxy's rank.
	Source string
	// Partitions is the number of USAGE_RAW partitions (default stream.DefaultPartitions);
	// it must match the other stages'.
	Partitions int
	// MaxBuffered bounds the events taken but not yet acknowledged (default 100,000).
	MaxBuffered int
	// BatchSize is the most events in one message (default 1000); a partition's batch is
	// published as soon as it is full.
	BatchSize int
	// FlushInterval is how long a partial batch waits (default 100 ms).
	FlushInterval time.Duration
	// Limits bound each event (default event.DefaultLimits when the zero value).
	Limits event.Limits
	// PublishTimeout bounds the wait for the acknowledgements of one round of publishes
	// (default 5 s).
	PublishTimeout time.Duration
	// MaxBackoff caps the wait between attempts to publish unacknowledged batches
	// (default 5 s).
	MaxBackoff time.Duration
	// SpoolDir is the directory of the on-disk spool, where batches that cannot be published
	// wait to be replayed (default "": no spool, they wait in memory). One emitter at a time
	// may use a directory; it is created when missing.
	SpoolDir string
	// SpoolMaxBytes bounds the spool's files (default 1 GiB); see the package documentation
	// for what happens when it is full.
	SpoolMaxBytes int64
	// SpoolSegmentBytes is the size of one spool segment file (default 8 MiB); a replayed
	// segment is read into memory whole.
	SpoolSegmentBytes int64
	// Registerer receives the emitter's metrics (default: not registered).
	Registerer prometheus.Registerer
	// Logger receives the emitter's logs (default discards them).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Partitions == 0 {
		o.Partitions = stream.DefaultPartitions
	}
	if o.MaxBuffered == 0 {
		o.MaxBuffered = DefaultMaxBuffered
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.Limits == (event.Limits{}) {
		o.Limits = event.DefaultLimits
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.SpoolMaxBytes == 0 {
		o.SpoolMaxBytes = spool.DefaultMaxBytes
	}
	if o.SpoolSegmentBytes == 0 {
		o.SpoolSegmentBytes = spool.DefaultSegmentBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports every invalid value of o, after defaults are applied to zero values.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.Name != "" && !stream.ValidEmitterName(o.Name) {
		errs = append(errs, fmt.Errorf("name %q must be 1 to %d of a-z, 0-9, _ and -, starting with a letter or digit", o.Name, stream.MaxEmitterName))
	}
	if o.Partitions < 1 {
		errs = append(errs, fmt.Errorf("partitions (%d) must be positive", o.Partitions))
	}
	if o.MaxBuffered < 1 {
		errs = append(errs, fmt.Errorf("max buffered (%d) must be positive", o.MaxBuffered))
	}
	if o.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size (%d) must be positive", o.BatchSize))
	}
	if o.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("flush interval (%s) must be positive", o.FlushInterval))
	}
	if o.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("publish timeout (%s) must be positive", o.PublishTimeout))
	}
	if o.MaxBackoff < firstBackoff {
		errs = append(errs, fmt.Errorf("max backoff (%s) must be at least %s", o.MaxBackoff, firstBackoff))
	}
	if err := (spool.Options{MaxBytes: o.SpoolMaxBytes, SegmentBytes: o.SpoolSegmentBytes}).Validate(); err != nil {
		errs = append(errs, err)
	}
	l := o.Limits
	if l.MaxFuture <= 0 || l.MaxAge <= 0 || l.MaxTokens <= 0 || l.MaxTags <= 0 ||
		l.MaxTagKey <= 0 || l.MaxTagValue <= 0 || l.MaxID <= 0 || l.MaxString <= 0 {
		errs = append(errs, fmt.Errorf("limits (%+v) must all be positive", l))
	}
	return errors.Join(errs...)
}
