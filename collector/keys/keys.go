// Package keys is the registry of API keys that tokenmeter's intakes (the collector's HTTP
// endpoints and the proxy) attribute spend by. Each key is stored only as its SHA-256 and
// binds fixed tags — team, cost centre, owner, … — and optionally the list of teams it may
// charge, so that a caller cannot charge its spend to a team its key does not allow.
//
// The registry file (JSON):
//
//	{"keys": [
//	  {"sha256": "<64 hex digits: printf %s \"$KEY\" | sha256sum>",
//	   "name": "search-prod",
//	   "tags": {"team": "search", "cost_center": "cc-42", "owner": "alice"}},
//	  {"sha256": "…", "name": "platform-batch",
//	   "tags": {"team": "platform"}, "teams": ["platform", "search", "support"]}
//	]}
//
// name identifies the key in logs, metrics and error messages (never the key itself). tags
// are set on every event made with the key, overriding what the event says. teams, when
// given, lists the teams the key may charge: an event may name any of them (case and
// surrounding spaces aside) and tags.team, which must be one of them, is the team of an event
// that names none. Without teams, a key that binds tags.team may charge that team only.
package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// MaxFileBytes bounds a registry file; a million keys fit in far less.
const MaxFileBytes = 64 << 20

// Key is one API key's binding. It is read-only once loaded: Tags and Teams are shared by
// every lookup.
type Key struct {
	// Name identifies the key in logs and metrics (never the key itself).
	Name string `json:"name"`
	// Tags are set on every event made with the key.
	Tags map[string]string `json:"tags"`
	// Teams, when not empty, are the teams the key may charge (see the package doc).
	Teams []string `json:"teams,omitempty"`
}

// Registry maps key hashes to bindings. It is immutable and safe for concurrent use; a nil
// *Registry holds no key.
type Registry struct {
	byHash map[[sha256.Size]byte]Key
}

// file is the JSON format of a registry file.
type file struct {
	Keys []struct {
		SHA256 string            `json:"sha256"`
		Name   string            `json:"name"`
		Tags   map[string]string `json:"tags"`
		Teams  []string          `json:"teams"`
	} `json:"keys"`
}

// Load reads a registry file (see Parse).
func Load(path string) (*Registry, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load API keys: %w", err)
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("load API keys %s: %d bytes, more than %d", path, st.Size(), MaxFileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load API keys: %w", err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load API keys %s: %w", path, err)
	}
	return r, nil
}

// Parse reads the JSON of a registry file and reports every problem in it: a hash that is not
// 64 hex digits, a hash bound twice, a key with neither tags nor teams, an invalid tag or
// team, a team listed twice, a tags.team missing from teams, a name that is not clean text.
func Parse(data []byte) (*Registry, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), MaxFileBytes)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode: more than one JSON value")
	}
	r := &Registry{byHash: make(map[[sha256.Size]byte]Key, len(f.Keys))}
	var errs []error
	for i, k := range f.Keys {
		var h [sha256.Size]byte
		raw, err := hex.DecodeString(strings.ToLower(k.SHA256))
		if err != nil || len(raw) != sha256.Size {
			errs = append(errs, fmt.Errorf("keys[%d]: sha256 %q is not 64 hex digits", i, clip(k.SHA256)))
			continue
		}
		copy(h[:], raw)
		if _, dup := r.byHash[h]; dup {
			errs = append(errs, fmt.Errorf("keys[%d]: sha256 %s is bound twice", i, k.SHA256))
			continue
		}
		name := k.Name
		if len(name) > event.DefaultLimits.MaxString || !normalize.CleanString(name) {
			errs = append(errs, fmt.Errorf("keys[%d]: name %q must be at most %d bytes of printable UTF-8",
				i, clip(name), event.DefaultLimits.MaxString))
			name = ""
		}
		at := fmt.Sprintf("keys[%d] (%s)", i, name)
		if len(k.Tags) == 0 && len(k.Teams) == 0 {
			errs = append(errs, fmt.Errorf("%s: no tags", at))
		}
		if len(k.Tags) > event.DefaultLimits.MaxTags {
			errs = append(errs, fmt.Errorf("%s: %d tags, more than the limit of %d", at, len(k.Tags), event.DefaultLimits.MaxTags))
		}
		for _, key := range slices.Sorted(maps.Keys(k.Tags)) {
			if err := normalize.CheckTag(key, k.Tags[key]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
			}
		}
		errs = append(errs, checkTeams(at, k.Tags[event.TagTeam], k.Teams)...)
		r.byHash[h] = Key{Name: k.Name, Tags: k.Tags, Teams: k.Teams}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// checkTeams validates a key's teams list against its bound team.
func checkTeams(at, bound string, teams []string) []error {
	var errs []error
	seen := make(map[string]bool, len(teams))
	for j, t := range teams {
		if err := normalize.CheckTag(event.TagTeam, t); err != nil {
			errs = append(errs, fmt.Errorf("%s: teams[%d]: %w", at, j, err))
			continue
		}
		if t == "" {
			errs = append(errs, fmt.Errorf("%s: teams[%d] is empty", at, j))
			continue
		}
		folded := strings.ToLower(t)
		if seen[folded] {
			errs = append(errs, fmt.Errorf("%s: teams[%d]: team %q is listed twice", at, j, t))
		}
		seen[folded] = true
	}
	if len(teams) > 0 && bound != "" && !slices.Contains(teams, bound) {
		errs = append(errs, fmt.Errorf("%s: tags.team %q is not one of its teams (%s)", at, bound, strings.Join(teams, ", ")))
	}
	return errs
}

// Len is the number of keys.
func (r *Registry) Len() int {
	if r == nil {
		return 0
	}
	return len(r.byHash)
}

// Lookup returns the binding of an API key.
func (r *Registry) Lookup(apiKey string) (Key, bool) {
	if r.Len() == 0 || apiKey == "" {
		return Key{}, false
	}
	k, ok := r.byHash[sha256.Sum256([]byte(apiKey))]
	return k, ok
}

// All yields every key with its hash, in no particular order.
func (r *Registry) All() iter.Seq2[[sha256.Size]byte, Key] {
	return func(yield func([sha256.Size]byte, Key) bool) {
		if r == nil {
			return
		}
		for h, k := range r.byHash {
			if !yield(h, k) {
				return
			}
		}
	}
}

// Team decides which team an event made with k is charged to, given the team the event names
// ("" for none). It returns the team as the registry spells it and true when k may charge it,
// or false when k may not. An event naming no team gets tags.team ("" when k binds none). A
// key that restricts no team (neither tags.team nor teams) returns asked unchanged.
func (k Key) Team(asked string) (string, bool) {
	bound := k.Tags[event.TagTeam]
	if bound == "" && len(k.Teams) == 0 {
		return asked, true
	}
	asked = strings.TrimSpace(asked)
	switch {
	case asked == "":
		return bound, true
	case len(k.Teams) == 0:
		return bound, strings.EqualFold(asked, bound)
	}
	for _, t := range k.Teams {
		if strings.EqualFold(asked, t) {
			return t, true
		}
	}
	return "", false
}

// Charge returns the tags of an event made with k: a copy of tags with k's bound tags set
// over the event's and the team decided by Team. It fails, naming the key and the team, when
// the event names a team k may not charge. tags is not modified.
func (k Key) Charge(tags map[string]string) (map[string]string, error) {
	asked := tags[event.TagTeam]
	team, ok := k.Team(asked)
	if !ok {
		return nil, fmt.Errorf("tags.team: the API key %q may not charge team %q (it may charge %s)",
			k.Name, clip(asked), strings.Join(k.allowed(), ", "))
	}
	out := make(map[string]string, len(tags)+len(k.Tags))
	maps.Copy(out, tags)
	maps.Copy(out, k.Tags)
	if team == "" {
		delete(out, event.TagTeam) // an empty team says no more than a missing one
	} else {
		out[event.TagTeam] = team
	}
	return out, nil
}

// allowed lists the teams k may charge.
func (k Key) allowed() []string {
	if len(k.Teams) > 0 {
		return k.Teams
	}
	return []string{k.Tags[event.TagTeam]}
}

// clip keeps error messages short when the offending value is long or hostile.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "…"
}
