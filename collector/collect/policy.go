package collect

// The required-tags policy (MISSION M6, M33): which tags every event must carry, per
// environment, and what happens to one that lacks them.

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// The policies of a tag-policy rule.
const (
	// PolicyReject rejects an event that lacks a required tag, naming the missing tags; the
	// rest of its body is accepted.
	PolicyReject = "reject"
	// PolicyUnallocated accepts it with every missing required tag set to Unallocated, and
	// counts it in tokenmeter_collector_tags_unallocated_total{env, tag}.
	PolicyUnallocated = "unallocated"
)

// Unallocated is the value PolicyUnallocated gives a missing required tag: spend that stays
// visible (the tag_coverage view counts it as not attributed) instead of being refused.
const Unallocated = "unallocated"

// defaultRequired are the tags required when the policy file does not say otherwise.
var defaultRequired = []string{event.TagTeam}

// maxPolicyFile bounds a tag-policy file; a policy for every environment fits in far less.
const maxPolicyFile = 1 << 20

// TagPolicy says which tags events must carry, per environment (the event's env tag, compared
// trimmed and lower-cased). The file (YAML):
//
//	default:                    # events of every other env, and events without one
//	  required: [team]          # default [team]
//	  policy: unallocated       # reject | unallocated; default unallocated
//	envs:
//	  prod:
//	    required: [team, feature]
//	    policy: reject
//	  dev:
//	    required: []            # nothing required
//	  staging: {policy: reject} # required as in default
//
// An env rule without required or policy takes the default rule's. A tag is missing when the
// event does not carry it or its value is blank. It is applied after the API key's bound
// tags (keys.Key), so a bound tag satisfies it. A TagPolicy is immutable.
type TagPolicy struct {
	def  tagRule
	envs map[string]*tagRule
}

// tagRule is the rule of one environment.
type tagRule struct {
	// name is the env, or "default"; the env label of the unallocated metric.
	name        string
	required    []string
	unallocated bool
	// requires says, for error messages, "in env "prod"" or "by default".
	requires string
}

type policyFile struct {
	Default *ruleFile           `yaml:"default"`
	Envs    map[string]ruleFile `yaml:"envs"`
}

type ruleFile struct {
	Required []string `yaml:"required"`
	Policy   string   `yaml:"policy"`
}

// LoadTagPolicy reads a tag-policy file (see TagPolicy and ParseTagPolicy).
func LoadTagPolicy(path string) (*TagPolicy, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load tag policy: %w", err)
	}
	if st.Size() > maxPolicyFile {
		return nil, fmt.Errorf("load tag policy %s: %d bytes, more than %d", path, st.Size(), maxPolicyFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tag policy: %w", err)
	}
	p, err := ParseTagPolicy(data)
	if err != nil {
		return nil, fmt.Errorf("load tag policy %s: %w", path, err)
	}
	return p, nil
}

// ParseTagPolicy reads the YAML of a tag-policy file and reports every problem in it: an
// unknown field, a policy other than reject or unallocated, an invalid or repeated tag key,
// more required tags than an event may carry, traffic required under unallocated (its only
// values are user and background), an env name that is not a lower-case tag value.
func ParseTagPolicy(data []byte) (*TagPolicy, error) {
	if len(data) > maxPolicyFile {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), maxPolicyFile)
	}
	var f policyFile
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	def := ruleFile{}
	if f.Default != nil {
		def = *f.Default
	}
	if def.Required == nil {
		def.Required = defaultRequired
	}
	if def.Policy == "" {
		def.Policy = PolicyUnallocated
	}
	var errs []error
	p := &TagPolicy{envs: make(map[string]*tagRule, len(f.Envs))}
	p.def, errs = compileRule("default", "default", "by default", def, errs)
	for _, env := range slices.Sorted(maps.Keys(f.Envs)) {
		if !validEnv(env) {
			errs = append(errs, fmt.Errorf("envs: env %q must be 1 to 64 characters of a-z, 0-9, '_', '.', '-' (events' env tags are compared lower-cased)", clipText(env)))
			continue
		}
		rf := f.Envs[env]
		if rf.Required == nil {
			rf.Required = p.def.required // checked once, in default
		}
		if rf.Policy == "" {
			rf.Policy = def.Policy
		}
		var r tagRule
		r, errs = compileRule("envs."+env, env, fmt.Sprintf("in env %q", env), rf, errs)
		p.envs[env] = &r
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// compileRule checks one rule, appending its problems to errs.
func compileRule(at, name, requires string, rf ruleFile, errs []error) (tagRule, []error) {
	r := tagRule{name: name, requires: requires}
	switch rf.Policy {
	case PolicyReject:
	case PolicyUnallocated:
		r.unallocated = true
	default:
		errs = append(errs, fmt.Errorf("%s.policy: %q is not %s or %s", at, clipText(rf.Policy), PolicyReject, PolicyUnallocated))
	}
	if len(rf.Required) > event.DefaultLimits.MaxTags {
		errs = append(errs, fmt.Errorf("%s.required: %d tags, more than the %d an event may carry", at, len(rf.Required), event.DefaultLimits.MaxTags))
	}
	for i, key := range rf.Required {
		// "user" is a valid value of every tag (traffic's values are user and background), so
		// this checks the key alone.
		if err := normalize.CheckTag(key, "user"); err != nil {
			errs = append(errs, fmt.Errorf("%s.required[%d]: %w", at, i, err))
			continue
		}
		if slices.Contains(r.required, key) {
			errs = append(errs, fmt.Errorf("%s.required[%d]: %s is listed twice", at, i, key))
			continue
		}
		if key == event.TagTraffic && r.unallocated {
			errs = append(errs, fmt.Errorf("%s.required[%d]: traffic cannot be required under policy %s: its only values are user and background", at, i, PolicyUnallocated))
			continue
		}
		r.required = append(r.required, key)
	}
	return r, errs
}

func validEnv(env string) bool {
	if env == "" || len(env) > 64 {
		return false
	}
	return strings.IndexFunc(env, notLabel) < 0
}

// rule returns the rule of an event's env tag.
func (p *TagPolicy) rule(env string) *tagRule {
	if len(p.envs) > 0 && env != "" {
		if r, ok := p.envs[strings.ToLower(strings.TrimSpace(env))]; ok {
			return r
		}
	}
	return &p.def
}

// Apply checks tags against the policy. When a required tag is missing it either fails with a
// message naming the missing tags (reject) or returns a copy of tags with them set to
// Unallocated and the list of the tags it set, and the rule's env (unallocated). Tags that
// comply are returned as they are, without allocating. tags is never modified.
func (p *TagPolicy) Apply(tags map[string]string) (out map[string]string, filled []string, env string, err error) {
	r := p.rule(tags[event.TagEnv])
	missing := 0
	for _, k := range r.required {
		if strings.TrimSpace(tags[k]) == "" {
			missing++
		}
	}
	if missing == 0 {
		return tags, nil, r.name, nil
	}
	filled = make([]string, 0, missing)
	for _, k := range r.required {
		if strings.TrimSpace(tags[k]) == "" {
			filled = append(filled, k)
		}
	}
	if !r.unallocated {
		return nil, nil, r.name, fmt.Errorf("tags: missing %s (the tag policy requires %s %s)",
			strings.Join(filled, ", "), strings.Join(r.required, ", "), r.requires)
	}
	out = make(map[string]string, len(tags)+missing)
	maps.Copy(out, tags)
	for _, k := range filled {
		out[k] = Unallocated
	}
	return out, filled, r.name, nil
}
