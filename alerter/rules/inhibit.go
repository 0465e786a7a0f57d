package rules

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Matcher is one of Alertmanager's label matchers: name = value, !=, =~ or !~ (a regular
// expression anchored at both ends). A label an alert lacks has the value "".
type Matcher struct {
	Name, Op, Value string
	re              *regexp.Regexp
}

// Matches reports whether labels satisfy the matcher.
func (m *Matcher) Matches(labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Op {
	case "=":
		return v == m.Value
	case "!=":
		return v != m.Value
	case "=~":
		return m.re.MatchString(v)
	case "!~":
		return !m.re.MatchString(v)
	}
	return false
}

func (m Matcher) String() string { return m.Name + m.Op + strconv.Quote(m.Value) }

// Matchers is a list of matchers that must all hold.
type Matchers []Matcher

// Matches reports whether labels satisfy every matcher.
func (ms Matchers) Matches(labels map[string]string) bool {
	for i := range ms {
		if !ms[i].Matches(labels) {
			return false
		}
	}
	return true
}

// InhibitRule mutes the notifications of firing alerts that match TargetMatchers while an
// alert that matches SourceMatchers fires with the same values of the Equal labels — as
// Alertmanager's inhibit_rules do: a team's budget alert quiets its spike alert. An alert
// that matches both sides of a rule is not muted by another that also matches both, so a
// rule cannot have alerts of one kind mute each other.
type InhibitRule struct {
	SourceMatchers, TargetMatchers Matchers
	Equal                          []string
}

// Inhibits reports whether the firing alert with labels source mutes the alert with labels
// target under r.
func (r *InhibitRule) Inhibits(source, target map[string]string) bool {
	if !r.TargetMatchers.Matches(target) || !r.SourceMatchers.Matches(source) {
		return false
	}
	for _, l := range r.Equal {
		if source[l] != target[l] {
			return false
		}
	}
	if r.SourceMatchers.Matches(target) && r.TargetMatchers.Matches(source) {
		return false
	}
	return true
}

var (
	labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	matcherRe = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$`)
)

// parseMatcher reads `name="value"` (or =~, !=, !~; the value may be unquoted).
func parseMatcher(s string) (Matcher, error) {
	g := matcherRe.FindStringSubmatch(s)
	if g == nil {
		return Matcher{}, fmt.Errorf("%q is not a matcher (want name=\"value\", with =, !=, =~ or !~)", s)
	}
	m := Matcher{Name: g[1], Op: g[2], Value: g[3]}
	if strings.HasPrefix(m.Value, `"`) {
		v, err := strconv.Unquote(m.Value)
		if err != nil {
			return Matcher{}, fmt.Errorf("%q: the value %s is not a valid quoted string", s, m.Value)
		}
		m.Value = v
	}
	if m.Op == "=~" || m.Op == "!~" {
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return Matcher{}, fmt.Errorf("%q: %v", s, err)
		}
		m.re = re
	}
	return m, nil
}

type rawInhibitRule struct {
	SourceMatchers []string `yaml:"source_matchers"`
	TargetMatchers []string `yaml:"target_matchers"`
	Equal          []string `yaml:"equal"`
}

func (p *parser) inhibitRule(raw rawInhibitRule) InhibitRule {
	var r InhibitRule
	for _, side := range []struct {
		field string
		in    []string
		out   *Matchers
	}{{"source_matchers", raw.SourceMatchers, &r.SourceMatchers}, {"target_matchers", raw.TargetMatchers, &r.TargetMatchers}} {
		if len(side.in) == 0 {
			p.errorf("%s: missing (an inhibit rule must say which alerts it is about)", side.field)
		}
		for _, s := range side.in {
			m, err := parseMatcher(s)
			if err != nil {
				p.errorf("%s: %v", side.field, err)
				continue
			}
			*side.out = append(*side.out, m)
		}
	}
	for _, l := range raw.Equal {
		if !labelName.MatchString(l) {
			p.errorf("equal: %q is not a label name", l)
		}
	}
	r.Equal = raw.Equal
	return r
}
