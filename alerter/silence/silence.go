// Package silence keeps the silences made while the alerter runs — by `tokenmeter silence` or
// the HTTP API — in the JetStream KV bucket tokenmeter_silences, one key per silence id, so
// that a restart keeps them. The API is the subset of Alertmanager's API v2 that equality
// silences need, so `amtool` and Grafana's Alertmanager data source can manage them too.
package silence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// bucket is the KV bucket this package keeps its records in.
const bucket = kv.Silences

// Limits on what a silence may hold: a silence is typed by people, and the bucket must not
// become a place to store anything.
const (
	MaxMatchers    = 16
	MaxTextBytes   = 1024 // a label value, the comment, created_by
	MaxSilences    = 1000 // active and pending ones; expired ones are not counted
	MaxDuration    = 366 * 24 * time.Hour
	KeepExpiredFor = 5 * 24 * time.Hour // as Alertmanager's default retention
)

// Silence mutes the alerts whose labels equal every matcher from StartsAt to EndsAt.
type Silence struct {
	ID        string            `json:"id"`
	Matchers  map[string]string `json:"matchers"`
	StartsAt  time.Time         `json:"starts_at"`
	EndsAt    time.Time         `json:"ends_at"`
	CreatedBy string            `json:"created_by"`
	Comment   string            `json:"comment"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// State is "pending" before StartsAt, "active" until EndsAt, "expired" after.
func (s *Silence) State(now time.Time) string {
	switch {
	case now.Before(s.StartsAt):
		return "pending"
	case now.Before(s.EndsAt):
		return "active"
	}
	return "expired"
}

// Validate reports every problem of s, as a person made it.
func (s *Silence) Validate(now time.Time) error {
	var errs []error
	if len(s.Matchers) == 0 {
		errs = append(errs, errors.New("matchers: missing (a silence must match something)"))
	}
	if len(s.Matchers) > MaxMatchers {
		errs = append(errs, fmt.Errorf("matchers: %d, more than %d", len(s.Matchers), MaxMatchers))
	}
	for _, k := range sortedKeys(s.Matchers) {
		if !labelName(k) {
			errs = append(errs, fmt.Errorf("matchers: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", clip(k)))
		}
		if err := text("matchers."+k, s.Matchers[k]); err != nil {
			errs = append(errs, err)
		}
	}
	if s.StartsAt.IsZero() || s.EndsAt.IsZero() {
		errs = append(errs, errors.New("starts_at and ends_at: both are required"))
	} else {
		if !s.EndsAt.After(s.StartsAt) {
			errs = append(errs, fmt.Errorf("ends_at %s is not after starts_at %s", s.EndsAt.Format(time.RFC3339), s.StartsAt.Format(time.RFC3339)))
		}
		if !s.EndsAt.After(now) {
			errs = append(errs, fmt.Errorf("ends_at %s is in the past", s.EndsAt.Format(time.RFC3339)))
		}
		if s.EndsAt.Sub(s.StartsAt) > MaxDuration {
			errs = append(errs, fmt.Errorf("the silence lasts %s, more than %s", s.EndsAt.Sub(s.StartsAt), MaxDuration))
		}
	}
	if strings.TrimSpace(s.CreatedBy) == "" {
		errs = append(errs, errors.New("created_by: missing (who silenced it)"))
	}
	for _, f := range [...]struct{ name, v string }{{"created_by", s.CreatedBy}, {"comment", s.Comment}} {
		if err := text(f.name, f.v); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func text(field, v string) error {
	switch {
	case len(v) > MaxTextBytes:
		return fmt.Errorf("%s: %d bytes, more than %d", field, len(v), MaxTextBytes)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s: not valid UTF-8", field)
	}
	for _, r := range v {
		if class := event.Invisible(r); class != "" {
			return fmt.Errorf("%s: contains %s (%U)", field, class, r)
		}
	}
	return nil
}

func labelName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 64 {
		return strings.ToValidUTF8(s[:64], "") + "…"
	}
	return s
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// ErrNotFound is returned for a silence id the bucket does not hold.
var ErrNotFound = errors.New("no such silence")

// Store reads and writes silences. Its methods are safe for concurrent use.
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
	mu  sync.Mutex // serialises creations, so that MaxSilences holds
}

// Open creates the bucket when missing, with as many replicas as the streams.
func Open(ctx context.Context, js jetstream.JetStream, storage jetstream.StorageType, now func() time.Time) (*Store, error) {
	replicas, err := stream.BucketReplicas(ctx, js, bucket)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", bucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "tokenmeter silences by id", History: 1, Storage: storage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", bucket, err)
	}
	return &Store{kv: kv, now: now}, nil
}

// Create validates s, gives it an id, and stores it. An s with the id of a stored silence
// replaces it (Alertmanager's update), which must not have expired.
func (st *Store) Create(ctx context.Context, s Silence) (Silence, error) {
	now := st.now().UTC()
	s.StartsAt, s.EndsAt = s.StartsAt.UTC(), s.EndsAt.UTC()
	if s.StartsAt.Before(now) {
		s.StartsAt = now // a silence starts now at the earliest
	}
	if err := s.Validate(now); err != nil {
		return Silence{}, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	all, err := st.List(ctx)
	if err != nil {
		return Silence{}, err
	}
	live := 0
	for _, o := range all {
		if o.ID == s.ID && o.State(now) == "expired" {
			return Silence{}, fmt.Errorf("silence %s has expired; create a new one", s.ID)
		}
		if o.ID != s.ID && o.State(now) != "expired" {
			live++
		}
	}
	if s.ID != "" && !slices.ContainsFunc(all, func(o Silence) bool { return o.ID == s.ID }) {
		return Silence{}, fmt.Errorf("%w: %s", ErrNotFound, clip(s.ID))
	}
	if live >= MaxSilences {
		return Silence{}, fmt.Errorf("%d silences are active or pending, the most the alerter keeps; expire some first", live)
	}
	if s.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		s.ID = hex.EncodeToString(b[:])
	}
	s.UpdatedAt = now
	if err := st.put(ctx, s); err != nil {
		return Silence{}, err
	}
	return s, nil
}

// Expire ends silence id now. Expiring an expired silence changes nothing.
func (st *Store) Expire(ctx context.Context, id string) (Silence, error) {
	s, err := st.Get(ctx, id)
	if err != nil {
		return Silence{}, err
	}
	now := st.now().UTC()
	if s.State(now) == "expired" {
		return s, nil
	}
	if s.StartsAt.After(now) {
		s.StartsAt = now
	}
	s.EndsAt, s.UpdatedAt = now, now
	return s, st.put(ctx, s)
}

// Get returns silence id.
func (st *Store) Get(ctx context.Context, id string) (Silence, error) {
	if !validID(id) {
		return Silence{}, fmt.Errorf("%w: %s", ErrNotFound, clip(id))
	}
	e, err := st.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Silence{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Silence{}, fmt.Errorf("read silence %s from %s: %w", id, bucket, err)
	}
	return decode(e.Value())
}

// List returns every silence the bucket holds, oldest first; silences expired for longer than
// KeepExpiredFor are deleted instead.
func (st *Store) List(ctx context.Context) ([]Silence, error) {
	keys, err := st.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	now := st.now()
	var out []Silence
	for id := range keys.Keys() {
		s, err := st.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if now.Sub(s.EndsAt) > KeepExpiredFor {
			_ = st.kv.Delete(ctx, id)
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].UpdatedAt.Equal(out[j].UpdatedAt) {
			return out[i].UpdatedAt.Before(out[j].UpdatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Watch calls fn with every silence, and again after every change, until ctx ends.
func (st *Store) Watch(ctx context.Context, fn func([]Silence)) error {
	w, err := st.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, err)
	}
	go func() {
		defer func() { _ = w.Stop() }()
		byID := map[string]Silence{}
		initial := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // the current values have all been delivered
					initial = false
				} else if e.Operation() != jetstream.KeyValuePut {
					delete(byID, e.Key())
				} else if s, err := decode(e.Value()); err == nil {
					byID[e.Key()] = s
				}
				if !initial {
					all := make([]Silence, 0, len(byID))
					for _, s := range byID {
						all = append(all, s)
					}
					sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
					fn(all)
				}
			}
		}
	}()
	return nil
}

func (st *Store) put(ctx context.Context, s Silence) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode silence %s: %w", s.ID, err)
	}
	if _, err := st.kv.Put(ctx, s.ID, data); err != nil {
		return fmt.Errorf("store silence %s in %s: %w", s.ID, bucket, err)
	}
	return nil
}

func decode(data []byte) (Silence, error) {
	var s Silence
	if err := json.Unmarshal(data, &s); err != nil {
		return Silence{}, fmt.Errorf("decode silence: %w", err)
	}
	return s, nil
}

// validID reports whether id can be a key of the bucket: the ids Create makes are 32 hex
// digits; anything else is refused before it reaches a KV subject.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}
