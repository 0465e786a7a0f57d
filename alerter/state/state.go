// Package state keeps the alerter's alerts in the JetStream KV bucket tokenmeter_alerts, one
// key per alert fingerprint, so that a restarted alerter neither pages again for an alert it
// already notified nor loses a resolve it still owes.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/alerter/dispatch"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Record is the JSON value of one alert: the contract every reader relies on (kv.Alert), and
// what lets a restarted alerter continue exactly where it stopped.
type Record struct {
	kv.Alert

	ActiveAt     time.Time                `json:"active_at"`
	FiredAt      time.Time                `json:"fired_at"`
	ClearedSince time.Time                `json:"cleared_since"`
	Level        string                   `json:"level"`
	Baseline     string                   `json:"baseline"`
	Notified     map[string]dispatch.Sent `json:"notified,omitempty"`
}

// Store reads and writes alert records.
type Store struct{ bucket jetstream.KeyValue }

// Open creates the bucket when missing, with as many replicas as the streams, and returns
// its store.
func Open(ctx context.Context, js jetstream.JetStream, storage jetstream.StorageType) (*Store, error) {
	replicas, err := stream.BucketReplicas(ctx, js, kv.Alerts)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", kv.Alerts, err)
	}
	bucket, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: kv.Alerts, Description: "tokenmeter alert state by fingerprint", History: 1, Storage: storage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", kv.Alerts, err)
	}
	return &Store{bucket: bucket}, nil
}

// Put writes the record of fingerprint fp.
func (s *Store) Put(ctx context.Context, fp string, r Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode alert %s: %w", fp, err)
	}
	if _, err := s.bucket.Put(ctx, fp, data); err != nil {
		return fmt.Errorf("store alert %s in %s: %w", fp, kv.Alerts, err)
	}
	return nil
}

// Delete removes the record of fp.
func (s *Store) Delete(ctx context.Context, fp string) error {
	if err := s.bucket.Delete(ctx, fp); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete alert %s from %s: %w", fp, kv.Alerts, err)
	}
	return nil
}

// Load reads every record. A value that does not decode is reported, not skipped: the
// alerter refuses to start rather than forget an alert.
func (s *Store) Load(ctx context.Context) (map[string]Record, error) {
	out := map[string]Record{}
	keys, err := s.bucket.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", kv.Alerts, err)
	}
	var errs []error
	for fp := range keys.Keys() {
		e, err := s.bucket.Get(ctx, fp)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read alert %s from %s: %w", fp, kv.Alerts, err)
		}
		var r Record
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			errs = append(errs, fmt.Errorf("decode alert %s from %s: %w", fp, kv.Alerts, err))
			continue
		}
		out[fp] = r
	}
	return out, errors.Join(errs...)
}
