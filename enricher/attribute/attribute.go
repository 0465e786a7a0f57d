// Package attribute decides who pays for an event: it normalises the attribution tags an
// event carries, fills them from a registry of services (team, cost centre, owner), and
// applies defaults, so that spend lands on a team instead of on "" or on five spellings of
// one team.
//
// The rules file (YAML):
//
//	service_tag: service       # the tag naming the calling service; default "service"
//	max_length: 64             # longest tag value kept after normalisation; default 64
//	defaults:                  # for fields still empty after the service registry
//	  team: unallocated
//	  env: unknown
//	services:
//	  - service: checkout-api  # matched after normalisation
//	    team: payments
//	    cost_center: cc-1234
//	    owner: alice@example.com   # kept as the "owner" tag, trimmed only
//	    force: true            # the registry wins over what the event says (default: fills gaps)
//	max_values:                # distinct values kept per tag; later new values become "other"
//	  feature: 500
//
// Normalisation of team, feature, env and cost_center: trim, lower-case, every run of
// characters outside [a-z0-9_.-] becomes one "-", leading and trailing "-" go, and the result
// is cut to max_length bytes. "Payments Team " and "payments-team" are one team.
//
// Cardinality caps (max_values, for team, feature, env and cost_center) protect the roll-ups
// from an emitter that puts a request id in a tag: each Rules value keeps the first N
// distinct values it sees of a capped tag, and turns every later new value into "other"
// (Result.Folded counts them). The sets live in memory, per enricher process and per rules
// reload, so a cap is a guard rail, not a registry: with several enrichers, or after a
// restart, which values are "first" can differ. Name the values you expect in services or
// keep them under the cap.
package attribute

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// TagOwner is the extra tag that carries a service's owner.
const TagOwner = "owner"

// Rules are a parsed rules file. They are immutable and safe for concurrent use.
type Rules struct {
	serviceTag string
	maxLength  int
	defaults   Fields
	services   map[string]Service
	caps       [numFields]*valueCap // nil: uncapped
}

// Other is what a value beyond a tag's cap becomes.
const Other = "other"

// The capped fields, as indexes of Rules.caps and names in max_values.
const (
	fieldTeam = iota
	fieldFeature
	fieldEnv
	fieldCostCenter
	numFields
)

var fieldNames = [numFields]string{"team", "feature", "env", "cost_center"}

// valueCap remembers the distinct values of one tag, up to max.
type valueCap struct {
	max  int
	mu   sync.RWMutex
	seen map[string]struct{}
}

// admit reports whether v may be kept: it is "", Other, already seen, or there is room.
func (c *valueCap) admit(v string) bool {
	if v == "" || v == Other {
		return true
	}
	c.mu.RLock()
	_, ok := c.seen[v]
	c.mu.RUnlock()
	if ok {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[v]; ok {
		return true
	}
	if len(c.seen) >= c.max {
		return false
	}
	c.seen[v] = struct{}{}
	return true
}

// Fields are the attribution fields an event carries as columns.
type Fields struct {
	Team       string `yaml:"team"`
	Feature    string `yaml:"feature"`
	Env        string `yaml:"env"`
	CostCenter string `yaml:"cost_center"`
}

// Service is one registry entry.
type Service struct {
	Team, CostCenter, Owner string
	Force                   bool
}

type rawRules struct {
	MaxValues  map[string]int `yaml:"max_values"`
	ServiceTag string         `yaml:"service_tag"`
	MaxLength  *int           `yaml:"max_length"`
	Defaults   Fields         `yaml:"defaults"`
	Services   []rawService   `yaml:"services"`
}

type rawService struct {
	Service    string `yaml:"service"`
	Team       string `yaml:"team"`
	CostCenter string `yaml:"cost_center"`
	Owner      string `yaml:"owner"`
	Force      bool   `yaml:"force"`
}

// maxOwner bounds the owner tag, like any tag value.
const maxOwner = 256

// Parse decodes and validates a rules file called name, reporting every problem.
func Parse(name string, data []byte) (*Rules, error) {
	var raw rawRules
	if err := decode(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	errorf := func(format string, args ...any) { errs = append(errs, fmt.Errorf(name+": "+format, args...)) }
	r := &Rules{serviceTag: "service", maxLength: 64, services: map[string]Service{}}
	if raw.ServiceTag != "" {
		if Normalize(raw.ServiceTag, 64) != raw.ServiceTag {
			errorf("service_tag %q: not a tag key (want [a-z0-9_.-], at most 64 bytes)", raw.ServiceTag)
		}
		r.serviceTag = raw.ServiceTag
	}
	if raw.MaxLength != nil {
		if *raw.MaxLength < 1 || *raw.MaxLength > 256 {
			errorf("max_length %d: want 1 to 256", *raw.MaxLength)
		} else {
			r.maxLength = *raw.MaxLength
		}
	}
	norm := func(where, field, v string) string {
		n := Normalize(v, r.maxLength)
		if v != "" && n == "" {
			errorf("%s: %s %q: nothing left after normalisation", where, field, v)
		}
		return n
	}
	r.defaults = Fields{
		Team: norm("defaults", "team", raw.Defaults.Team), Feature: norm("defaults", "feature", raw.Defaults.Feature),
		Env: norm("defaults", "env", raw.Defaults.Env), CostCenter: norm("defaults", "cost_center", raw.Defaults.CostCenter),
	}
	for i, s := range raw.Services {
		where := fmt.Sprintf("service #%d", i+1)
		key := Normalize(s.Service, r.maxLength)
		if key == "" {
			errorf("%s: service: missing", where)
			continue
		}
		where = fmt.Sprintf("service %q", s.Service)
		if _, dup := r.services[key]; dup {
			errorf("%s: listed twice (as %q after normalisation)", where, key)
			continue
		}
		svc := Service{Team: norm(where, "team", s.Team), CostCenter: norm(where, "cost_center", s.CostCenter),
			Owner: strings.TrimSpace(s.Owner), Force: s.Force}
		if len(svc.Owner) > maxOwner {
			errorf("%s: owner longer than %d bytes", where, maxOwner)
		}
		if svc.Team == "" && svc.CostCenter == "" && svc.Owner == "" {
			errorf("%s: gives no team, cost_center or owner", where)
		}
		r.services[key] = svc
	}
	names := make([]string, 0, len(raw.MaxValues))
	for name := range raw.MaxValues {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		n := raw.MaxValues[name]
		i := slices.Index(fieldNames[:], name)
		switch {
		case i < 0:
			errorf("max_values: %q: not a capped tag (want %s)", name, strings.Join(fieldNames[:], ", "))
		case n < 1 || n > 1_000_000:
			errorf("max_values: %s %d: want 1 to 1000000", name, n)
		default:
			r.caps[i] = &valueCap{max: n, seen: map[string]struct{}{}}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func decode(data []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed YAML (decoder panicked: %v)", p)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, v, yaml.Strict()); err != nil {
		return errors.New(yaml.FormatError(err, false, false))
	}
	return nil
}

// Normalize trims s, lower-cases it, turns every run of characters outside [a-z0-9_.-] into
// one "-", drops leading and trailing "-", and cuts the result to max bytes
// (event.NormalizeTag, which the collector's budget caps compare with too).
func Normalize(s string, max int) string { return event.NormalizeTag(s, max) }

// Result says what Apply did to an event.
type Result struct {
	// Changed is true when any attribution field or the owner tag changed.
	Changed bool
	// Folded names the tags whose value became Other under its cap.
	Folded []string
}

// Apply attributes one event in place: normalisation, then the service registry, then the
// defaults, then the cardinality caps.
func (r *Rules) Apply(row *batch.Row) Result {
	res := Result{Changed: r.attribute(row)}
	for i, f := range [numFields]*string{&row.Team, &row.Feature, &row.Env, &row.CostCenter} {
		if c := r.caps[i]; c != nil && !c.admit(*f) {
			*f = Other
			res.Changed = true
			res.Folded = append(res.Folded, fieldNames[i])
		}
	}
	return res
}

func (r *Rules) attribute(row *batch.Row) bool {
	before := Fields{row.Team, row.Feature, row.Env, row.CostCenter}
	row.Team = Normalize(row.Team, r.maxLength)
	row.Feature = Normalize(row.Feature, r.maxLength)
	row.Env = Normalize(row.Env, r.maxLength)
	row.CostCenter = Normalize(row.CostCenter, r.maxLength)
	ownerChanged := false
	if svc, ok := r.services[Normalize(r.tag(row, r.serviceTag), r.maxLength)]; ok {
		set := func(field *string, v string) {
			if v != "" && (svc.Force || *field == "") {
				*field = v
			}
		}
		set(&row.Team, svc.Team)
		set(&row.CostCenter, svc.CostCenter)
		if svc.Owner != "" {
			ownerChanged = r.setTag(row, TagOwner, svc.Owner, svc.Force)
		}
	}
	fill := func(field *string, v string) {
		if *field == "" {
			*field = v
		}
	}
	fill(&row.Team, r.defaults.Team)
	fill(&row.Feature, r.defaults.Feature)
	fill(&row.Env, r.defaults.Env)
	fill(&row.CostCenter, r.defaults.CostCenter)
	return ownerChanged || before != Fields{row.Team, row.Feature, row.Env, row.CostCenter}
}

func (r *Rules) tag(row *batch.Row, key string) string {
	for _, t := range row.ExtraTags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

// maxTags is the event's tag limit (event.DefaultLimits.MaxTags); the owner tag is not added
// to an event that already has that many.
const maxTags = 32

// setTag sets an extra tag, keeping ExtraTags sorted by key; an existing value stays unless
// force.
func (r *Rules) setTag(row *batch.Row, key, value string, force bool) bool {
	i, found := slices.BinarySearchFunc(row.ExtraTags, key, func(t batch.Tag, k string) int { return strings.Compare(t.Key, k) })
	switch {
	case found && (!force || row.ExtraTags[i].Value == value):
		return false
	case found:
		row.ExtraTags[i].Value = value
		return true
	case len(row.ExtraTags)+5 >= maxTags: // the five well-known tags count towards the limit
		return false
	}
	row.ExtraTags = slices.Insert(row.ExtraTags, i, batch.Tag{Key: key, Value: value})
	return true
}
