package collect

// API-key authentication and attribution of POST /v1/events, /v1/traces and /v1/outcomes
// (MISSION M6). With Config.KeysFile set, every request must carry a key of the registry
// (collector/keys) and the key's bound tags are applied to each of its events; an event naming
// a team its key may not charge is rejected on its own. With Config.TagPolicyFile set, the
// required-tags policy (TagPolicy) is applied after that. Both files are reloaded when they
// change. Without them nothing here runs: the checks cost nothing per event.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	json "github.com/goccy/go-json"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/collector/keys"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/stage/reload"
)

// HeaderKey carries a collector API key, as an alternative to Authorization: Bearer.
const HeaderKey = "X-Tokenmeter-Key"

// DefaultFilePoll is how often the keys file and the tag-policy file are checked for changes.
const DefaultFilePoll = 5 * time.Second

// The answers to a request without a usable key.
const (
	errMissingKey = "missing API key: this collector requires the header Authorization: Bearer KEY or " + HeaderKey + ": KEY"
	errUnknownKey = "unknown API key: it is not in the collector's keys file"
)

// attributor holds a collector's API-key registry and tag policy, each nil when not
// configured, and their metrics.
type attributor struct {
	keys    *watched[keys.Registry]
	policy  *watched[TagPolicy]
	maxTags int

	authFailures *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	unallocated  *prometheus.CounterVec
}

// newAttributor loads the files cfg names; a file that cannot be loaded is an error.
func newAttributor(cfg Config) (*attributor, error) {
	a := &attributor{
		maxTags: cfg.Limits.MaxTags,
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_auth_failures_total",
			Help: "Requests refused for their API key: missing (401) or unknown (403).",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_attribution_rejected_total",
			Help: "Events rejected by attribution: api_key (a team the key may not charge), tag_policy (a missing required tag), too_many_tags.",
		}, []string{"reason"}),
		unallocated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_tags_unallocated_total",
			Help: "Required tags set to \"unallocated\" by the tag policy, by policy env (\"default\" for the default rule) and tag.",
		}, []string{"env", "tag"}),
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenmeter_collector_file_reloads_total",
		Help: "Reloads of the keys file and the tag-policy file, by file (keys, tag_policy) and result (ok, error).",
	}, []string{"file", "result"})
	for _, m := range []prometheus.Collector{a.authFailures, a.rejected, a.unallocated, reloads} {
		if err := cfg.Registerer.Register(m); err != nil {
			return nil, fmt.Errorf("register attribution metrics: %w", err)
		}
	}
	var err error
	if cfg.KeysFile != "" {
		if a.keys, err = watch(cfg.KeysFile, "keys", keys.Load, reloads, cfg.Logger); err != nil {
			return nil, err
		}
	}
	if cfg.TagPolicyFile != "" {
		if a.policy, err = watch(cfg.TagPolicyFile, "tag_policy", LoadTagPolicy, reloads, cfg.Logger); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// authenticate wraps next with the API-key check when a keys file is configured: 401 without
// a key, 403 with one the registry does not hold, each with a JSON body saying so. next finds
// the key's binding in the request's context.
func (a *attributor) authenticate(next http.Handler) http.Handler {
	if a.keys == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := requestKey(r.Header)
		if raw == "" {
			a.authFailures.WithLabelValues("missing").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="tokenmeter"`)
			writeJSON(w, http.StatusUnauthorized, failure{Error: errMissingKey})
			return
		}
		k, ok := a.keys.get().Lookup(raw)
		if !ok {
			a.authFailures.WithLabelValues("unknown").Inc()
			writeJSON(w, http.StatusForbidden, failure{Error: errUnknownKey})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyContext{}, &k)))
	})
}

// keyContext keys a request's *keys.Key in its context.
type keyContext struct{}

// requestKey returns the API key a request carries: the bearer token of Authorization, else
// X-Tokenmeter-Key.
func requestKey(h http.Header) string {
	if auth := h.Get("Authorization"); auth != "" {
		if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			if token = strings.TrimSpace(token); token != "" {
				return token
			}
		}
	}
	return strings.TrimSpace(h.Get(HeaderKey))
}

// requestAttribution is what attribution applies to one request's events.
type requestAttribution struct {
	key    *keys.Key
	policy *TagPolicy
}

// request returns the attribution of the request whose context is ctx; its zero value means
// there is nothing to apply.
func (a *attributor) request(ctx context.Context) requestAttribution {
	var ra requestAttribution
	if a.keys != nil {
		ra.key, _ = ctx.Value(keyContext{}).(*keys.Key)
	}
	ra.policy = a.policy.get()
	return ra
}

func (ra requestAttribution) none() bool { return ra.key == nil && ra.policy == nil }

// source is the batch.Row.Source of the request's events: the API key's name, or "" for an
// anonymous request.
func (ra requestAttribution) source() string {
	if ra.key == nil {
		return ""
	}
	return batch.SourceKey + ra.key.Name
}

// applyBatch attributes a decoded body's events: those refused move to b.Rejected, with their
// index in the body, which stays ordered by index.
func (a *attributor) applyBatch(ra requestAttribution, b *event.Batch) {
	if ra.none() {
		return
	}
	byIndex := func(i, j int) bool { return b.Rejected[i].Index < b.Rejected[j].Index }
	sort.SliceStable(b.Rejected, byIndex)
	kept := b.Events[:0]
	var refused []event.Rejection
	idx, next := -1, 0 // the body index of b.Events[i]; the next rejection to skip over
	for i := range b.Events {
		idx++
		for next < len(b.Rejected) && b.Rejected[next].Index == idx {
			idx++
			next++
		}
		ev := b.Events[i]
		if err := a.apply(ra, &ev); err != nil {
			refused = append(refused, event.Rejection{Index: idx, ID: ev.ID, Error: err.Error()})
			continue
		}
		kept = append(kept, ev)
	}
	b.Events = kept
	if len(refused) > 0 {
		b.Rejected = append(b.Rejected, refused...)
		sort.SliceStable(b.Rejected, byIndex)
	}
}

// apply attributes one valid event: the key's bound tags and team check, then the tag policy.
// It replaces u.Tags rather than modifying the map, which the caller may share.
func (a *attributor) apply(ra requestAttribution, u *event.Usage) error {
	tags := u.Tags
	if ra.key != nil {
		charged, err := ra.key.Charge(tags)
		if err != nil {
			a.rejected.WithLabelValues("api_key").Inc()
			return err
		}
		tags = charged
	}
	var filled []string
	var env string
	if ra.policy != nil {
		var err error
		if tags, filled, env, err = ra.policy.Apply(tags); err != nil {
			a.rejected.WithLabelValues("tag_policy").Inc()
			return err
		}
	}
	if len(tags) > a.maxTags {
		a.rejected.WithLabelValues("too_many_tags").Inc()
		return fmt.Errorf("tags: %d tags with those the API key and the tag policy set, more than the limit of %d", len(tags), a.maxTags)
	}
	for _, k := range filled {
		a.unallocated.WithLabelValues(env, k).Inc()
	}
	if len(tags) == 0 {
		tags = nil
	}
	u.Tags = tags
	return nil
}

// watchFiles reloads the keys file and the tag-policy file every poll until ctx ends.
func (a *attributor) watchFiles(ctx context.Context, poll time.Duration) {
	if a.keys == nil && a.policy == nil {
		return
	}
	// Each reload logs and counts its own outcome.
	reload.Poll(ctx, poll, func() { _, _ = a.keys.reload() }, func() { _, _ = a.policy.reload() })
}

// watched is a value loaded from a file, loaded again when the file's content changes. A
// file that fails to load leaves the value in force, and is reported once.
type watched[T any] struct {
	path, label string
	load        func(path string) (*T, error)
	reloads     *prometheus.CounterVec
	log         *slog.Logger

	cur atomic.Pointer[T]
	// mu serialises reload; version is the file's content in force and the one last refused.
	mu      sync.Mutex
	version reload.Version
}

// contentKey names the file's content now, or the error reading it.
func contentKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return reload.ErrorKey(err), err
	}
	return reload.Key(data), nil
}

func watch[T any](path, label string, load func(string) (*T, error), reloads *prometheus.CounterVec, log *slog.Logger) (*watched[T], error) {
	w := &watched[T]{path: path, label: label, load: load, reloads: reloads, log: log}
	key, err := contentKey(path)
	if err != nil {
		return nil, fmt.Errorf("load %s file: %w", label, err)
	}
	v, err := load(path)
	if err != nil {
		return nil, err
	}
	w.cur.Store(v)
	w.version.Accept(key)
	return w, nil
}

// get returns the value in force; nil for a nil *watched.
func (w *watched[T]) get() *T {
	if w == nil {
		return nil
	}
	return w.cur.Load()
}

// reload loads the file again when its content changed. It reports whether a new value is in
// force; a refused content returns its error the first time only.
func (w *watched[T]) reload() (bool, error) {
	if w == nil {
		return false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// The key is taken before loading, so a file changed while being read is read again at
	// the next poll, never missed.
	key, err := contentKey(w.path)
	if w.version.Check(key) != reload.Changed {
		return false, nil
	}
	var v *T
	if err == nil {
		v, err = w.load(w.path)
	}
	if err != nil {
		w.version.Refuse(key)
		w.reloads.WithLabelValues(w.label, "error").Inc()
		w.log.Error("reload refused, the previous version stays in force", "file", w.path, "err", err)
		return false, fmt.Errorf("reload %s file %s: %w", w.label, w.path, err)
	}
	w.cur.Store(v)
	w.version.Accept(key)
	w.reloads.WithLabelValues(w.label, "ok").Inc()
	w.log.Info("reloaded", "file", w.path)
	return true, nil
}

// writeJSON answers with body as JSON.
func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
