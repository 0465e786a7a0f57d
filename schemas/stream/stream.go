// Package stream names the JetStream streams, subjects and headers that the stages share, and
// the partitioning rule that keeps every copy of an event on one partition.
package stream

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream names (DESIGN.md §2.3).
const (
	Raw      = "USAGE_RAW"
	Enriched = "USAGE_ENRICHED"
	Dead     = "USAGE_DEAD"
)

// Subject prefixes; a partition number or a dead-letter source follows.
const (
	RawPrefix      = "usage.raw."
	EnrichedPrefix = "usage.enriched."
	DeadPrefix     = "usage.dead."
)

// Headers carried by tokenmeter's messages.
const (
	// HeaderSchema names the payload format, e.g. "usage-batch/1".
	HeaderSchema = "Tokenmeter-Schema"
	// HeaderReason says why a message was dead-lettered.
	HeaderReason = "Tokenmeter-Reason"
	// HeaderSource names the stream and sequence a dead-lettered message came from.
	HeaderSource = "Tokenmeter-Source"
)

// DefaultPartitions is the number of partitions of USAGE_RAW and USAGE_ENRICHED unless
// configured. Every stage must use the same number.
const DefaultPartitions = 4

// Partition maps an event id to one of n partitions: xxhash64 of the id's bytes, modulo n.
// Every copy of an event — a retry, a duplicate send — lands on the same partition, so the
// partition's single writer can de-duplicate it. Events are routed by PartitionOf, which is
// Partition of the event id unless the event names its provider response.
func Partition(eventID string, n int) int {
	return int(xxhash.Sum64String(eventID) % uint64(n))
}

// PartitionKey is what an event is routed by. An event that names the provider's response
// (response_id) is routed by "response", NUL, its provider in lower case, NUL and the response
// id; any other event by its own id. Two reports of one provider call — a proxy and an SDK
// both emitting it under different event ids — therefore land on the same partition, whose
// single writer keeps the first and drops the second (the aggregator's response-key set).
// Every copy of one event (a retry, a redelivery) still lands on one partition, since it
// carries the same provider and response id. Event ids cannot contain NUL (validation rejects
// control characters), so a response key is never also an event id.
//
// An event without a response id keeps the partition of its id: Partition(id, n).
func PartitionKey(provider, responseID, eventID string) string {
	if responseID == "" {
		return eventID
	}
	return ResponseKeyPrefix + strings.ToLower(provider) + "\x00" + responseID
}

// ResponseKeyPrefix begins the partition key of an event routed by its response.
const ResponseKeyPrefix = "response\x00"

// PartitionOf is the partition of an event with these fields: Partition(PartitionKey(provider,
// responseID, eventID), n), computed without building the key. The collector, the Go emitter
// and the aggregator's partition check all route by it.
func PartitionOf(provider, responseID, eventID string, n int) int {
	if responseID == "" {
		return Partition(eventID, n)
	}
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(ResponseKeyPrefix)
	_, _ = d.WriteString(strings.ToLower(provider))
	_, _ = d.WriteString("\x00")
	_, _ = d.WriteString(responseID)
	return int(d.Sum64() % uint64(n))
}

// RawSubject is the subject of partition p of USAGE_RAW.
func RawSubject(p int) string { return RawPrefix + strconv.Itoa(p) }

// EnrichedSubject is the subject of partition p of USAGE_ENRICHED.
func EnrichedSubject(p int) string { return EnrichedPrefix + strconv.Itoa(p) }

// DeadSubject is the dead-letter subject for messages that came from stage.
func DeadSubject(stage string) string { return DeadPrefix + stage }

// Options sizes the streams. The zero value is not valid; start from DefaultOptions.
type Options struct {
	Replicas int
	// DuplicateWindow is JetStream's Nats-Msg-Id de-duplication window.
	DuplicateWindow time.Duration
	// MaxBytes bounds the backlog of each working stream (USAGE_RAW, USAGE_ENRICHED,
	// OUTCOMES): what has been published and not yet consumed by every consumer that needs
	// it. A full working stream refuses new messages (DiscardNew), so publishers answer
	// 429 or spool exactly while consumers are down or behind. Zero keeps an existing
	// stream's size and gives a new one DefaultMaxBytes.
	MaxBytes int64
	// HistoryMaxBytes and HistoryMaxAge bound USAGE_HISTORY, the copy of both working
	// streams that reconcile and the alerter's start-up read. It drops its oldest messages
	// when full (DiscardOld): deleting an old copy loses nothing. Zero keeps an existing
	// history's limit and gives a new one the default.
	HistoryMaxBytes int64
	HistoryMaxAge   time.Duration
	// Partitions is the number of partitions whose consumers Ensure creates on
	// USAGE_ENRICHED (zero: DefaultPartitions). More can be added later with
	// EnsurePartition; none is ever removed.
	Partitions int
	Storage    jetstream.StorageType
}

// Defaults and bounds of Options.
const (
	// MinMaxBytes is the smallest backlog a working stream may be given: the history
	// consumer's flow control can hold up to 32 MiB of copied messages in it.
	MinMaxBytes            = 64 << 20
	DefaultMaxBytes        = 8 << 30
	DefaultHistoryMaxBytes = 2 << 30
	DefaultHistoryMaxAge   = 7 * 24 * time.Hour
	// deadMaxAge and deadMaxBytes bound USAGE_DEAD, which nobody consumes.
	deadMaxAge   = 7 * 24 * time.Hour
	deadMaxBytes = 1 << 30
)

// Validate reports every bad value of o, named as the flags that set it. Partitions is the
// stage's own partition count, which the stage validates.
func (o Options) Validate() error {
	var errs []error
	if o.Replicas < 0 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("-stream-replicas (%d) must be within [1, 5] (0: one)", o.Replicas))
	}
	if o.MaxBytes != 0 && o.MaxBytes < MinMaxBytes {
		errs = append(errs, fmt.Errorf("-stream-max-bytes (%d) must be at least %d (64 MiB), or 0 for the default", o.MaxBytes, MinMaxBytes))
	}
	if o.HistoryMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("-history-max-bytes (%d) must not be negative", o.HistoryMaxBytes))
	}
	if o.HistoryMaxAge < 0 {
		errs = append(errs, fmt.Errorf("-history-max-age (%s) must not be negative", o.HistoryMaxAge))
	}
	return errors.Join(errs...)
}

// RegisterFlags registers the stream sizing flags every stage takes (TOKENMETER_STREAM_MAX_BYTES
// and so on through ops.ApplyEnv), writing into o.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Replicas, "stream-replicas", o.Replicas,
		"replicas of every stream in a JetStream cluster (an existing stream keeps more if it has them)")
	fs.Int64Var(&o.MaxBytes, "stream-max-bytes", o.MaxBytes,
		"backlog each of USAGE_RAW, USAGE_ENRICHED and OUTCOMES may hold before publishers are refused (0: 8 GiB for a new stream, an existing one keeps its size)")
	fs.Int64Var(&o.HistoryMaxBytes, "history-max-bytes", o.HistoryMaxBytes,
		"size of USAGE_HISTORY, the copy reconcile and the alerter's start-up read; the oldest copies go first (0: 2 GiB for a new stream, an existing one keeps its size)")
	fs.DurationVar(&o.HistoryMaxAge, "history-max-age", o.HistoryMaxAge,
		"age after which copies leave USAGE_HISTORY (0: 7 days for a new stream, an existing one keeps its age)")
}

// DefaultOptions suit a single machine.
var DefaultOptions = Options{
	Replicas:        1,
	DuplicateWindow: 2 * time.Minute,
	Storage:         jetstream.FileStorage,
}

// History is the stream that keeps a bounded copy of USAGE_RAW and USAGE_ENRICHED, under
// their own subjects, for reconcile and the alerter's start-up replay.
const History = "USAGE_HISTORY"

// Durable consumers on the working streams. They are a contract: under interest retention a
// message is kept until every one of them has it, and a message published on a subject no
// consumer wants is dropped at once, so Ensure creates them before anything is published.
const (
	// EnricherConsumer is the consumer all enrichers share on USAGE_RAW.
	EnricherConsumer = "enricher"
	// OutcomesConsumer is the aggregator's outcome writer on OUTCOMES.
	OutcomesConsumer = "outcomes-writer"
	// HistoryConsumer is the name, on USAGE_RAW and on USAGE_ENRICHED, of the consumer that
	// copies every message into USAGE_HISTORY.
	HistoryConsumer = "history"
	// AlerterConsumer is the name of the alerter's consumer of earlier layouts: on
	// USAGE_ENRICHED before version 5, where Ensure deletes it, then on USAGE_HISTORY, where
	// the alerter deletes it.
	AlerterConsumer = "alerter"
	// AlerterLiveConsumer is the alerter's consumer on USAGE_ENRICHED. It is not one of the
	// consumers Ensure creates: it acknowledges nothing, and it is deleted whenever the
	// alerter stops or falls behind (alerter/alerting/feed.go).
	AlerterLiveConsumer = "alerter-live"
)

// AggregatorConsumer is the consumer of partition p of USAGE_ENRICHED.
func AggregatorConsumer(p int) string { return "aggregator-" + strconv.Itoa(p) }

// historyDeliver is where the history consumer of a working stream pushes its messages; the
// server itself subscribes there for USAGE_HISTORY.
func historyDeliver(name string) string { return "tokenmeter.history." + strings.ToLower(name) }

// Configs returns the configurations of the streams as Ensure creates them, in the order it
// creates them: the working streams (still under limits retention, which Ensure turns into
// interest retention once their consumers exist), USAGE_DEAD, then USAGE_HISTORY.
func Configs(o Options) []jetstream.StreamConfig {
	work := func(name, subject, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject},
			Retention:   jetstream.InterestPolicy,
			Discard:     jetstream.DiscardNew,
			MaxBytes:    cmp.Or(o.MaxBytes, DefaultMaxBytes),
			Storage:     o.Storage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
		}
	}
	var sources []*jetstream.StreamSource
	for _, name := range []string{Raw, Enriched} {
		sources = append(sources, &jetstream.StreamSource{
			Name:     name,
			Consumer: &jetstream.StreamConsumerSource{Name: HistoryConsumer, DeliverSubject: historyDeliver(name)},
		})
	}
	return []jetstream.StreamConfig{
		work(Raw, RawSubjects, "validated usage events as received, batched per partition, until enriched"),
		work(Enriched, EnrichedPrefix+"*", "priced and attributed usage events as Arrow record batches, until written"),
		work(Outcomes, OutcomesSubject, "workflow outcomes from POST /v1/outcomes, NDJSON, until written"),
		{
			Name:        Dead,
			Description: "messages that could not be processed, with the reason in a header",
			Subjects:    []string{DeadPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardNew,
			MaxAge:      deadMaxAge,
			MaxBytes:    deadMaxBytes,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
		},
		{
			Name:        History,
			Description: "a bounded copy of USAGE_RAW and USAGE_ENRICHED for reconcile and the alerter; the oldest goes first",
			Sources:     sources,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxAge:      cmp.Or(o.HistoryMaxAge, DefaultHistoryMaxAge),
			MaxBytes:    cmp.Or(o.HistoryMaxBytes, DefaultHistoryMaxBytes),
			Storage:     o.Storage,
			Replicas:    o.Replicas,
		},
	}
}

// consumerConfigs returns the durable consumers that must exist on the working streams
// before they take interest retention, keyed by stream.
func consumerConfigs(o Options) map[string][]jetstream.ConsumerConfig {
	pull := func(name, filter string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{
			Durable:       name,
			FilterSubject: filter,
			AckPolicy:     jetstream.AckExplicitPolicy,
			MaxDeliver:    -1,
		}
	}
	history := func(name string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{
			Durable:        HistoryConsumer,
			Description:    "copies " + name + " into " + History,
			DeliverSubject: historyDeliver(name),
			AckPolicy:      jetstream.AckFlowControlPolicy,
			FlowControl:    true,
			IdleHeartbeat:  time.Second, // what the server requires of a flow-control consumer
			// It acknowledges only with flow control, which the server asks for after half of a
			// window that grows to 32 MiB, or after this many messages: until then the copied
			// messages still take room in the working stream (see MinMaxBytes).
			MaxAckPending: 1024,
		}
	}
	raw := []jetstream.ConsumerConfig{pull(EnricherConsumer, RawSubjects), history(Raw)}
	enriched := []jetstream.ConsumerConfig{history(Enriched)}
	for p := range cmp.Or(o.Partitions, DefaultPartitions) {
		enriched = append(enriched, pull(AggregatorConsumer(p), EnrichedSubject(p)))
	}
	return map[string][]jetstream.ConsumerConfig{
		Raw:      raw,
		Enriched: enriched,
		Outcomes: {pull(OutcomesConsumer, "")},
	}
}

// Ensure creates the streams and their consumers or brings them to this layout; every stage
// calls it at start-up, so the order in which stages start does not matter.
//
// The working streams hold backlog, not history: interest retention deletes a message once
// every durable consumer of its subject has acknowledged it (the history consumer included,
// which copies it into USAGE_HISTORY first). Because a message that no consumer wants is
// dropped the moment it is stored, a new working stream is created under limits retention,
// its consumers are created, and only then is it switched to interest retention; an existing
// limits stream — an earlier layout, full of consumed history — is switched the same way,
// and the server deletes at once what every consumer has acknowledged and keeps the rest.
//
// An existing stream keeps its operator's sizing unless o sets it: its replicas (when more
// than o asks for), MaxBytes, history limits and duplicate window. What the guarantees rest
// on — subjects, retention, DiscardNew, storage, no age limit on backlog — is put back.
//
// Stages that start at once on a JetStream cluster ask for the same streams at once, and the
// servers may then answer none of those requests; Ensure starts over when one times out
// (ensureAttempts).
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	return ensureAttempts(ctx, func() error { return ensure(ctx, js, o) })
}

func ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	consumers := consumerConfigs(o)
	for _, cfg := range Configs(o) {
		s, err := js.Stream(ctx, cfg.Name)
		exists := err == nil
		switch {
		case exists:
			have := s.CachedInfo().Config
			cfg.Replicas = max(cfg.Replicas, have.Replicas)
			cfg.Duplicates = have.Duplicates
			switch {
			case cfg.Name == History:
				cfg.MaxBytes = pick(o.HistoryMaxBytes, have.MaxBytes)
				cfg.MaxAge = pick(o.HistoryMaxAge, have.MaxAge)
			case cfg.Name == Dead:
				cfg.MaxBytes, cfg.MaxAge = have.MaxBytes, have.MaxAge
			default:
				cfg.MaxBytes = pick(o.MaxBytes, have.MaxBytes)
			}
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("look up stream %s: %w", cfg.Name, err)
		}
		want := consumers[cfg.Name]
		if want == nil {
			if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
				return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
			}
			continue
		}
		if !exists || s.CachedInfo().Config.Retention != jetstream.InterestPolicy {
			limits := cfg
			limits.Retention = jetstream.LimitsPolicy
			if _, err := js.CreateOrUpdateStream(ctx, limits); err != nil {
				return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
			}
		}
		for _, cc := range want {
			if err := ensureConsumer(ctx, js, cfg.Name, cc); err != nil {
				return err
			}
		}
		if cfg.Name == Enriched {
			// The alerter reads USAGE_HISTORY now; its old consumer here would hold every
			// message it had not read, and fill the stream while no alerter runs.
			if err := js.DeleteConsumer(ctx, Enriched, AlerterConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("delete the old consumer %s on %s: %w", AlerterConsumer, Enriched, err)
			}
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("switch stream %s to interest retention: %w", cfg.Name, err)
		}
	}
	return nil
}

// EnsurePartition makes sure partition p of USAGE_ENRICHED has its aggregator consumer. The
// enricher calls it before it first publishes to a partition, so that a partition beyond
// those Ensure was told of is kept for its aggregator, not dropped for want of interest.
func EnsurePartition(ctx context.Context, js jetstream.JetStream, p int) error {
	for _, cc := range consumerConfigs(Options{Partitions: p + 1})[Enriched] {
		if cc.Durable == AggregatorConsumer(p) {
			return ensureConsumer(ctx, js, Enriched, cc)
		}
	}
	return nil
}

// ensureConsumer creates cc on stream unless a consumer of that name exists: the stage that
// owns a consumer sets its tuning (ack wait, pending limits), which Ensure must not reset.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig) error {
	if cc.DeliverSubject != "" {
		_, err := js.PushConsumer(ctx, stream, cc.Durable)
		if err == nil {
			return nil
		}
		return createConsumer(ctx, js, stream, cc, err)
	}
	c, err := js.Consumer(ctx, stream, cc.Durable)
	if err != nil {
		return createConsumer(ctx, js, stream, cc, err)
	}
	// A consumer of an earlier layout may filter fewer subjects than its stream now takes
	// (the enricher's once took usage.raw.*, not the emitters' usage.raw.<p>.<name>); under
	// interest retention a message only the history consumer wants is copied and then
	// dropped, never enriched, so widen it.
	have := c.CachedInfo().Config
	if have.FilterSubject == cc.FilterSubject && len(have.FilterSubjects) == 0 {
		return nil
	}
	have.FilterSubject, have.FilterSubjects = cc.FilterSubject, nil
	if _, err := js.UpdateConsumer(ctx, stream, have); err != nil {
		return fmt.Errorf("widen consumer %s on %s to %s: %w", cc.Durable, stream, cc.FilterSubject, err)
	}
	return nil
}

// createConsumer creates cc on stream after looking it up failed with err.
func createConsumer(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig, err error) error {
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("look up consumer %s on %s: %w", cc.Durable, stream, err)
	}
	if _, err := js.CreateConsumer(ctx, stream, cc); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
		return fmt.Errorf("create consumer %s on %s: %w", cc.Durable, stream, err)
	}
	return nil
}

// pick is set when it is set, else have.
func pick[T comparable](set, have T) T {
	var zero T
	if set != zero {
		return set
	}
	return have
}
