package enrich

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// TagEmitter is the tag that names the emitter whose NATS identity published an event
// (usage.raw.<p>.<name>). The enricher sets it from the subject alone: an event that arrives
// any other way — the collector, the proxy — loses an emitter tag it carries, so that the tag
// can be trusted in reports.
const TagEmitter = "emitter"

// Unallocated is the team of an emitter's event that names a team its binding may not charge
// when the binding has no team of its own (tags.team), as the proxy does with an API key.
const Unallocated = "unallocated"

// MaxBindingsFileBytes bounds an emitter bindings file.
const MaxBindingsFileBytes = 16 << 20

// Binding is what an emitter's events are charged to: the tags set on every event of the
// emitter, over the event's own, and optionally the teams it may charge — the fields of a
// collector API key (collector/keys), keyed by the emitter's name instead of a key's hash.
type Binding struct {
	// Name is the emitter's name, its NATS identity's (tokenmeter nats add-emitter NAME).
	Name string `json:"name"`
	// Tags are set on every event of the emitter.
	Tags map[string]string `json:"tags"`
	// Teams, when not empty, are the teams the emitter may charge: an event may name any of
	// them, and tags.team, which must be one of them, is the team of an event that names
	// none. Without Teams, an emitter whose binding sets tags.team charges that team only.
	Teams []string `json:"teams,omitempty"`
}

// Bindings are the emitters' bindings by name; a nil *Bindings binds nobody. They are
// immutable once parsed.
type Bindings struct {
	byName map[string]Binding
}

// ParseBindings reads an emitter bindings file (JSON):
//
//	{"emitters": [
//	  {"name": "billing", "tags": {"team": "billing", "cost_center": "cc-7"}},
//	  {"name": "batch-jobs", "tags": {"team": "platform"}, "teams": ["platform", "search"]}
//	]}
//
// and reports every problem in it: a name that is not an emitter's, a name bound twice, a
// binding with neither tags nor teams, a tag an event could not carry (or the emitter tag,
// which the enricher sets), a team listed twice, a tags.team missing from teams.
func ParseBindings(data []byte) (*Bindings, error) {
	if len(data) > MaxBindingsFileBytes {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), MaxBindingsFileBytes)
	}
	var f struct {
		Emitters []Binding `json:"emitters"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode: more than one JSON value")
	}
	b := &Bindings{byName: make(map[string]Binding, len(f.Emitters))}
	var errs []error
	for i, bd := range f.Emitters {
		at := fmt.Sprintf("emitters[%d] (%s)", i, bd.Name)
		if !stream.ValidEmitterName(bd.Name) {
			errs = append(errs, fmt.Errorf("emitters[%d]: name %q is not an emitter's: 1 to %d of a-z, 0-9, _ and -, starting with a letter or digit",
				i, clip(bd.Name), stream.MaxEmitterName))
			continue
		}
		if _, dup := b.byName[bd.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: bound twice", at))
			continue
		}
		if len(bd.Tags) == 0 && len(bd.Teams) == 0 {
			errs = append(errs, fmt.Errorf("%s: no tags nor teams", at))
		}
		if _, ok := bd.Tags[TagEmitter]; ok {
			errs = append(errs, fmt.Errorf("%s: tags.%s is set by the enricher, from the subject", at, TagEmitter))
		}
		// The bound tags become an event's tags: the event's own rule checks them.
		now := time.Now()
		probe := event.Usage{ID: "binding", Time: now, Provider: "p", Model: "m", ServiceTier: event.TierStandard, Tags: bd.Tags}
		if err := probe.Validate(now, event.DefaultLimits); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
		seen := make(map[string]bool, len(bd.Teams))
		for j, t := range bd.Teams {
			probe.Tags = map[string]string{event.TagTeam: t}
			if err := probe.Validate(now, event.DefaultLimits); err != nil {
				errs = append(errs, fmt.Errorf("%s: teams[%d]: %w", at, j, err))
				continue
			}
			k := teamKey(t)
			switch {
			case k == "":
				errs = append(errs, fmt.Errorf("%s: teams[%d] %q names no team", at, j, t))
			case seen[k]:
				errs = append(errs, fmt.Errorf("%s: teams[%d]: team %q is listed twice", at, j, t))
			}
			seen[k] = true
		}
		if bound := bd.Tags[event.TagTeam]; len(bd.Teams) > 0 && bound != "" && !slices.Contains(bd.Teams, bound) {
			errs = append(errs, fmt.Errorf("%s: tags.team %q is not one of its teams (%s)", at, bound, strings.Join(bd.Teams, ", ")))
		}
		b.byName[bd.Name] = bd
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b, nil
}

// Len is the number of bound emitters.
func (b *Bindings) Len() int {
	if b == nil {
		return 0
	}
	return len(b.byName)
}

// Lookup returns the binding of the emitter named name.
func (b *Bindings) Lookup(name string) (Binding, bool) {
	if b == nil {
		return Binding{}, false
	}
	bd, ok := b.byName[name]
	return bd, ok
}

// teamKey is what two team names are compared by: the enricher's normalisation, so that
// "Search " and "search" are one team, as in the budget caps.
func teamKey(team string) string { return event.NormalizeTag(team, event.DefaultLimits.MaxTagValue) }

// Team decides the team an event of the emitter is charged to, given the team the event
// names ("" for none): the team as the binding spells it, and whether the event asked for
// another team that the binding may not charge. An event naming no team gets tags.team (""
// when the binding sets none); a binding that restricts no team (neither tags.team nor teams)
// keeps the event's. A team the binding may not charge becomes tags.team, or Unallocated —
// never a refusal: the spend happened, and the emitter's own team (or nobody) pays for it.
func (bd Binding) Team(asked string) (team string, overridden bool) {
	bound := bd.Tags[event.TagTeam]
	if bound == "" && len(bd.Teams) == 0 {
		return asked, false
	}
	k := teamKey(asked)
	if k == "" {
		return bound, false
	}
	if len(bd.Teams) == 0 {
		return bound, k != teamKey(bound)
	}
	for _, t := range bd.Teams {
		if k == teamKey(t) {
			return t, false
		}
	}
	return cmp.Or(bound, Unallocated), true
}

// bind charges row to the emitter named emitter ("" for a message that no emitter published)
// under binding bd (ok false: the emitter has none). It sets the emitter tag — or removes one
// the event carries when no emitter published it — and for a bound emitter sets the bound tags
// over the row's and decides its team (Binding.Team). It reports whether the event named a
// team the binding may not charge.
//
// The bound tags are added whatever the row's tag count: the binding wins over the event, so
// a row may leave with the event's 32 tags, the binding's and the emitter tag.
func bind(row *batch.Row, emitter string, bd Binding, ok bool) (overridden bool) {
	if emitter == "" {
		// The collector's or the proxy's subject, which only they may publish: the source
		// they recorded stands.
		deleteTag(row, TagEmitter)
		return false
	}
	setTag(row, TagEmitter, emitter)
	row.Source = batch.SourceEmitter + emitter // whatever the emitter claimed
	if !ok {
		return false
	}
	team, overridden := bd.Team(row.Team)
	for _, k := range slices.Sorted(maps.Keys(bd.Tags)) {
		setTag(row, k, bd.Tags[k])
	}
	row.Team = team
	return overridden
}

// setTag sets tag key of row to value: a well-known field, or an extra tag kept sorted by key.
func setTag(row *batch.Row, key, value string) {
	switch key {
	case event.TagTeam:
		row.Team = value
	case event.TagFeature:
		row.Feature = value
	case event.TagEnv:
		row.Env = value
	case event.TagCostCenter:
		row.CostCenter = value
	case event.TagTraffic:
		row.Traffic = value
	default:
		i, found := slices.BinarySearchFunc(row.ExtraTags, key, func(t batch.Tag, k string) int { return strings.Compare(t.Key, k) })
		if found {
			row.ExtraTags[i].Value = value
			return
		}
		row.ExtraTags = slices.Insert(row.ExtraTags, i, batch.Tag{Key: key, Value: value})
	}
}

// deleteTag removes the extra tag key from row.
func deleteTag(row *batch.Row, key string) {
	row.ExtraTags = slices.DeleteFunc(row.ExtraTags, func(t batch.Tag) bool { return t.Key == key })
}

// clip keeps error messages short when the offending value is long or hostile.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "…"
}
