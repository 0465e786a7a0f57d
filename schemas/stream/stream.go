// Package stream names the JetStream streams, subjects and headers that the stages share, and
// the partitioning rule that keeps every copy of an event on one partition.
package stream

import (
	"context"
	"errors"
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
	// MaxAge and MaxBytes bound what a stream keeps; a full money stream refuses new
	// messages (DiscardNew) rather than silently deleting old ones.
	MaxAge   time.Duration
	MaxBytes int64
	Storage  jetstream.StorageType
}

// DefaultOptions suit a single machine.
var DefaultOptions = Options{
	Replicas:        1,
	DuplicateWindow: 2 * time.Minute,
	MaxAge:          7 * 24 * time.Hour,
	MaxBytes:        8 << 30,
	Storage:         jetstream.FileStorage,
}

// Configs returns the configurations of the streams.
func Configs(o Options) []jetstream.StreamConfig {
	mk := func(name, subject, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardNew,
			MaxAge:      o.MaxAge,
			MaxBytes:    o.MaxBytes,
			Storage:     o.Storage,
			Replicas:    o.Replicas,
			Duplicates:  o.DuplicateWindow,
		}
	}
	return []jetstream.StreamConfig{
		mk(Raw, RawPrefix+"*", "validated usage events as received, batched per partition"),
		mk(Enriched, EnrichedPrefix+"*", "priced and attributed usage events as Arrow record batches"),
		mk(Dead, DeadPrefix+">", "messages that could not be processed, with the reason in a header"),
		mk(Outcomes, OutcomesSubject, "workflow outcomes from POST /v1/outcomes, NDJSON"),
	}
}

// Ensure creates the streams or updates their configuration; every stage calls it at
// start-up, so the order in which stages start does not matter.
//
// A stream that exists keeps its operator's sizing: its replicas (when more than o asks
// for), MaxAge, MaxBytes and duplicate window. A stage starting with the single-machine
// defaults must not scale a cluster's streams back down to one replica, nor shrink a stream
// an operator enlarged for their volume (`nats stream edit USAGE_RAW --max-bytes …`). What
// the guarantees rest on — subjects, limits retention, DiscardNew, storage — is put back.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	for _, cfg := range Configs(o) {
		s, err := js.Stream(ctx, cfg.Name)
		switch {
		case err == nil:
			have := s.CachedInfo().Config
			cfg.Replicas = max(cfg.Replicas, have.Replicas)
			cfg.MaxAge, cfg.MaxBytes, cfg.Duplicates = have.MaxAge, have.MaxBytes, have.Duplicates
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("look up stream %s: %w", cfg.Name, err)
		}
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
