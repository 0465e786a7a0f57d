// Package budget enforces budget hard caps at intake. The alerter publishes every budget's
// state to the JetStream KV bucket tokenmeter_budgets; an Enforcer watches that bucket and
// keeps the budgets that are hard capped in memory, so that checking an event costs a map
// lookup and no network round trip.
//
// A capped budget's policy decides: "refuse" turns the scope's events away (the collector
// answers 429 when nothing else is left in the body), "flag" accepts them with the tag
// budget_exceeded=<budget name>. A record whose period has ended is ignored, so a stopped
// alerter cannot keep a team capped into the next month.
//
// A runaway rule with cap: true publishes a record of kind "workflow" for the scope
// workflow_id=<id>: it refuses the events and calls of that one workflow (matched on the
// event's workflow id, not a tag) until the alert resolves and the record is deleted. A record
// of a kind this enforcer does not know is ignored, never applied as a tag scope: a newer
// alerter cannot make an older collector refuse what it did not mean to.
package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Enforcer holds the hard-capped budgets. Its methods are safe for concurrent use.
type Enforcer struct {
	mu     sync.RWMutex
	capped map[string]kv.Budget // by budget name
	now    func() time.Time
	log    *slog.Logger
	synced chan struct{}
	retry  time.Duration // Follow's wait between attempts: FollowRetry
	// refusals counts refused events and calls by the scope key of the record refusing them.
	refusals *prometheus.CounterVec
}

// NewEnforcer returns an enforcer with no budget; Watch feeds it.
func NewEnforcer(now func() time.Time, log *slog.Logger) *Enforcer {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Enforcer{capped: map[string]kv.Budget{}, now: now, log: log, synced: make(chan struct{}), retry: FollowRetry,
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_budget_refusals_total",
			Help: "Events and calls refused by a hard cap, by the scope key of the cap (team, feature, cost_center, workflow_id).",
		}, []string{"scope"})}
}

// Register adds the enforcer's metrics to reg. Registering them again with the same reg (a
// collector and a proxy sharing one enforcer and one registry) is not an error.
func (e *Enforcer) Register(reg prometheus.Registerer) error {
	if e == nil || reg == nil {
		return nil
	}
	if err := reg.Register(e.refusals); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if errors.As(err, &dup) && dup.ExistingCollector == e.refusals {
			return nil
		}
		return fmt.Errorf("register budget metrics: %w", err)
	}
	return nil
}

func (e *Enforcer) refused(r kv.Budget) {
	k, _, _ := strings.Cut(r.Scope, "=")
	e.refusals.WithLabelValues(k).Inc()
}

// Watch follows the bucket (creating it when missing, with the alerter's settings) until ctx
// ends. It returns once the watch is set up; Synced is closed when the current states are
// loaded.
func (e *Enforcer) Watch(ctx context.Context, js jetstream.JetStream) error {
	bucket, err := js.KeyValue(ctx, kv.Budgets)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		var replicas int
		if replicas, err = stream.BucketReplicas(ctx, js, kv.Budgets); err != nil {
			return fmt.Errorf("open KV bucket %s: %w", kv.Budgets, err)
		}
		bucket, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: kv.Budgets, Description: "tokenmeter budget states by budget name; the collector enforces hard caps from it", History: 1,
			Replicas: replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			bucket, err = js.KeyValue(ctx, kv.Budgets)
		}
	}
	if err != nil {
		return fmt.Errorf("open KV bucket %s: %w", kv.Budgets, err)
	}
	w, err := bucket.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch KV bucket %s: %w", kv.Budgets, err)
	}
	go func() {
		defer func() { _ = w.Stop() }()
		once := sync.Once{}
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-w.Updates():
				if !ok {
					return
				}
				if u == nil {
					once.Do(func() { close(e.synced) })
					continue
				}
				e.apply(u.Key(), u.Operation(), u.Value())
			}
		}
	}()
	return nil
}

// FollowRetry is how long Follow waits before trying again to set up the watch.
const FollowRetry = 5 * time.Second

// Follow sets up the watch as Watch does, trying again every FollowRetry while JetStream
// cannot answer — NATS away, or a cluster that has just started and still elects the leader
// of the bucket's stream — until it succeeds or ctx ends. Until then no cap is enforced: an
// intake that refused to start for want of the bucket would refuse every event instead.
func (e *Enforcer) Follow(ctx context.Context, js jetstream.JetStream) {
	for {
		err := e.Watch(ctx, js)
		if err == nil || ctx.Err() != nil {
			return
		}
		e.log.Warn("budget hard caps not loaded yet; trying again", "err", err, "in", e.retry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.retry):
		}
	}
}

// Synced is closed once the bucket's current states are loaded.
func (e *Enforcer) Synced() <-chan struct{} { return e.synced }

func (e *Enforcer) apply(key string, op jetstream.KeyValueOp, value []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if op != jetstream.KeyValuePut {
		delete(e.capped, key)
		return
	}
	var r kv.Budget
	if err := json.Unmarshal(value, &r); err != nil {
		e.log.Warn("ignore undecodable budget state", "budget", key, "err", err)
		delete(e.capped, key)
		return
	}
	if r.State != kv.StateHardCapped {
		delete(e.capped, key)
		return
	}
	if k, v, _ := strings.Cut(r.Scope, "="); (r.Kind != kv.KindBudget && r.Kind != kv.KindWorkflow) ||
		(r.Kind == kv.KindWorkflow && (k != kv.WorkflowScope || v == "")) {
		e.log.Warn("ignore a hard cap this collector does not know", "key", key, "kind", r.Kind, "scope", r.Scope)
		delete(e.capped, key)
		return
	}
	e.capped[key] = r
}

// Over returns the first (by name) hard-capped record, within its period, whose scope an
// event with tags and workflowID belongs to. Tag values are compared as the enricher stores
// them (event.NormalizeTag): "Search" and "search " are team search, whose spend the budget
// counts. A workflow cap matches the workflow id exactly, never a tag.
func (e *Enforcer) Over(tags map[string]string, workflowID string) (kv.Budget, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(e.capped) == 0 || (len(tags) == 0 && workflowID == "") {
		return kv.Budget{}, false
	}
	now := e.now()
	var found []kv.Budget
	for _, r := range e.capped {
		k, v, ok := strings.Cut(r.Scope, "=")
		if !ok || !(r.PeriodEnd.IsZero() || now.Before(r.PeriodEnd)) {
			continue
		}
		if r.Kind == kv.KindWorkflow {
			if workflowID != "" && workflowID == v {
				found = append(found, r)
			}
			continue
		}
		if t, ok := tags[k]; ok && (t == v || event.NormalizeTag(t, event.NormalizedTagLen) == event.NormalizeTag(v, event.NormalizedTagLen)) {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		return kv.Budget{}, false
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Name < found[j].Name })
	return found[0], true
}

// Refusal explains why a scope's events are refused.
func Refusal(r kv.Budget) string {
	k, v, _ := strings.Cut(r.Scope, "=")
	if r.Kind == kv.KindWorkflow {
		until := "until the alert resolves"
		if !r.PeriodEnd.IsZero() {
			until += " (at the latest " + r.PeriodEnd.UTC().Format(time.RFC3339) + ")"
		}
		return fmt.Sprintf("workflow %q is capped by runaway rule %q: %s; its calls are refused %s", v, r.Name, r.Reason, until)
	}
	return fmt.Sprintf("%s %q is over the hard cap of budget %q: %s USD spent of %s USD since %s; its events are refused until %s or until the budget is raised",
		k, v, r.Name, r.SpentUSD, r.LimitUSD, r.PeriodStart.UTC().Format(time.DateOnly), r.PeriodEnd.UTC().Format(time.DateOnly))
}

// Decide is what the caps do to one event with tags and workflowID: refused, with the
// reason; flagged, with a copy of tags carrying FlagTag; or neither, with tags as they are.
// tags is never modified.
func (e *Enforcer) Decide(tags map[string]string, workflowID string) (out map[string]string, refusal string) {
	if e == nil {
		return tags, ""
	}
	r, over := e.Over(tags, workflowID)
	switch {
	case !over:
		return tags, ""
	case r.Policy == kv.PolicyFlag:
		out = make(map[string]string, len(tags)+1)
		for k, v := range tags {
			out[k] = v
		}
		out[kv.FlagTag] = r.Name
		return out, ""
	}
	e.refused(r)
	return tags, Refusal(r)
}

// Apply enforces the caps on a decoded body: refused events move to b.Rejected (with their
// index in the body), flagged ones get FlagTag. It returns the first refusal, to explain a
// 429 when no event is left.
func (e *Enforcer) Apply(b *event.Batch) (first string, refused int) {
	if e == nil {
		return "", 0
	}
	e.mu.RLock()
	n := len(e.capped)
	e.mu.RUnlock()
	if n == 0 {
		return "", 0
	}
	// Events are the body's elements that were not rejected, in order: recover their
	// indexes from the rejected ones.
	rejected := make(map[int]bool, len(b.Rejected))
	for _, r := range b.Rejected {
		rejected[r.Index] = true
	}
	kept := b.Events[:0]
	idx := -1
	for i := range b.Events {
		idx++
		for rejected[idx] {
			idx++
		}
		ev := b.Events[i]
		r, over := e.Over(ev.Tags, ev.WorkflowID)
		switch {
		case !over:
			kept = append(kept, ev)
		case r.Policy == kv.PolicyFlag:
			if ev.Tags == nil {
				ev.Tags = map[string]string{}
			}
			ev.Tags[kv.FlagTag] = r.Name
			kept = append(kept, ev)
		default:
			msg := Refusal(r)
			if first == "" {
				first = msg
			}
			refused++
			e.refused(r)
			b.Rejected = append(b.Rejected, event.Rejection{Index: idx, ID: ev.ID, Error: "budget: " + msg})
		}
	}
	b.Events = kept
	sort.SliceStable(b.Rejected, func(i, j int) bool { return b.Rejected[i].Index < b.Rejected[j].Index })
	return first, refused
}
