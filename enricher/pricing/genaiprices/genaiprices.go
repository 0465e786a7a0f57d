// Package genaiprices reads pydantic's genai-prices provider files (prices/providers/*.yml)
// as a reference to compare the catalogue with (refdiff). It reads only what a comparison
// needs: each provider's id and fallback providers, and each model's id, match rule and
// token prices, with their start dates. Prices are read from their literal text, never
// through a float.
package genaiprices

import (
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/tokenmeter/tokenmeter/enricher/pricing/refdiff"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// Provider is one provider file.
type Provider struct {
	ID string
	// Fallbacks are the ids of providers whose models this one also serves, searched after
	// its own (Azure serves OpenAI's).
	Fallbacks []string
	Models    []Model
}

// Model is one model of a provider file.
type Model struct {
	ID    string
	Match Clause
	// Prices are the model's prices; each applies from its Start (zero: from the start), or,
	// when Daily is set, only at those hours of the day.
	Prices []Price
}

// Price is one of a model's prices.
type Price struct {
	Start time.Time
	// Daily, when not zero, is the length of the daily window the price applies in (DeepSeek's
	// off-peak hours).
	Daily  time.Duration
	Prices refdiff.Prices
}

// Clause is a model's match rule: exactly one of its fields is set.
type Clause struct {
	Equals, StartsWith, EndsWith, Contains *string
	Regex                                  *regexp.Regexp
	Or, And                                []Clause
}

// Matches reports whether name (compared in lower case) satisfies the clause.
func (c *Clause) Matches(name string) bool {
	name = strings.ToLower(name)
	switch {
	case c.Equals != nil:
		return name == strings.ToLower(*c.Equals)
	case c.StartsWith != nil:
		return strings.HasPrefix(name, strings.ToLower(*c.StartsWith))
	case c.EndsWith != nil:
		return strings.HasSuffix(name, strings.ToLower(*c.EndsWith))
	case c.Contains != nil:
		return strings.Contains(name, strings.ToLower(*c.Contains))
	case c.Regex != nil:
		return c.Regex.MatchString(name)
	case c.Or != nil:
		return slices.ContainsFunc(c.Or, func(c Clause) bool { return c.Matches(name) })
	case c.And != nil:
		for i := range c.And {
			if !c.And[i].Matches(name) {
				return false
			}
		}
		return true
	}
	return false
}

// maxFileSize bounds one provider file; the largest is about 300 KiB.
const maxFileSize = 8 << 20

// ReadDir reads every *.yml file of fsys (genai-prices' prices/providers directory). Notes
// name what was left out (a model without an id, a regular expression Go cannot compile).
func ReadDir(fsys fs.FS) (providers []Provider, notes []string, err error) {
	names, err := fs.Glob(fsys, "*.yml")
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		return nil, nil, errors.New("no *.yml provider files")
	}
	var errs []error
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err == nil && len(data) > maxFileSize {
			err = fmt.Errorf("%s: %d bytes, more than %d", name, len(data), maxFileSize)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p, n, err := Parse(path.Base(name), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		providers = append(providers, p)
		notes = append(notes, n...)
	}
	return providers, notes, errors.Join(errs...)
}

// Parse decodes one provider file; name is used in errors and notes.
func Parse(name string, data []byte) (p Provider, notes []string, err error) {
	var raw rawProvider
	if err := decode(data, &raw); err != nil {
		return Provider{}, nil, fmt.Errorf("%s: %w", name, err)
	}
	if raw.ID == "" {
		return Provider{}, nil, fmt.Errorf("%s: id: missing", name)
	}
	p = Provider{ID: raw.ID, Fallbacks: raw.Fallbacks}
	for i, rm := range raw.Models {
		where := fmt.Sprintf("%s: model %q", name, rm.ID)
		if rm.ID == "" {
			notes = append(notes, fmt.Sprintf("%s: model #%d: skipped: no id", name, i+1))
			continue
		}
		c, err := clause(rm.Match)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: skipped: match: %v", where, err))
			continue
		}
		m := Model{ID: rm.ID, Match: c}
		ok := true
		for _, rp := range rm.Prices.list {
			pr, err := price(rp)
			if err != nil {
				notes = append(notes, fmt.Sprintf("%s: skipped: %v", where, err))
				ok = false
				break
			}
			m.Prices = append(m.Prices, pr)
		}
		if ok {
			p.Models = append(p.Models, m)
		}
	}
	return p, notes, nil
}

// decode runs the YAML decoder, turning a decoder panic into an error (see pricefile).
func decode(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML (decoder panicked: %v)", r)
		}
	}()
	if err := yaml.Unmarshal(data, v); err != nil {
		return errors.New(yaml.FormatError(err, false, false))
	}
	return nil
}

// maxDepth bounds how deeply and/or clauses nest; the real files nest two levels.
const maxDepth = 16

func clause(r rawClause) (Clause, error) { return clauseAt(r, 0) }

func clauseAt(r rawClause, depth int) (Clause, error) {
	if depth > maxDepth {
		return Clause{}, fmt.Errorf("clauses nested more than %d deep", maxDepth)
	}
	var c Clause
	n := 0
	for _, s := range []struct {
		v   *string
		dst **string
	}{{r.Equals, &c.Equals}, {r.StartsWith, &c.StartsWith}, {r.EndsWith, &c.EndsWith}, {r.Contains, &c.Contains}} {
		if s.v != nil {
			*s.dst = s.v
			n++
		}
	}
	if r.Regex != nil {
		re, err := regexp.Compile(*r.Regex)
		if err != nil {
			return Clause{}, fmt.Errorf("regex %q: %w", *r.Regex, err)
		}
		c.Regex = re
		n++
	}
	for _, l := range []struct {
		raw []rawClause
		dst *[]Clause
	}{{r.Or, &c.Or}, {r.And, &c.And}} {
		if l.raw == nil {
			continue
		}
		n++
		*l.dst = []Clause{}
		for _, rc := range l.raw {
			sub, err := clauseAt(rc, depth+1)
			if err != nil {
				return Clause{}, err
			}
			*l.dst = append(*l.dst, sub)
		}
	}
	if n != 1 {
		return Clause{}, fmt.Errorf("%d conditions in one clause, want exactly 1", n)
	}
	return c, nil
}

// priceFields maps genai-prices' token prices to refdiff's field names, audio tokens
// included; other units (images, web searches, requests) are not compared.
var priceFields = []struct{ genai, field string }{
	{"input_mtok", "input"},
	{"cache_read_mtok", "cached_input"},
	{"cache_write_mtok", "cache_write"},
	{"cache_write_1h_mtok", "cache_write_1h"},
	{"output_mtok", "output"},
	{"input_audio_mtok", "audio_input"},
	{"output_audio_mtok", "audio_output"},
}

func price(rp rawConditional) (Price, error) {
	var pr Price
	if s := rp.Constraint.StartDate; s.Set {
		t, err := time.Parse(time.DateOnly, s.Text)
		if err != nil {
			return Price{}, fmt.Errorf("start_date %q: not a date", s.Text)
		}
		pr.Start = t
	}
	if rp.Constraint.StartTime.Set || rp.Constraint.EndTime.Set {
		from, err1 := clock(rp.Constraint.StartTime.Text)
		to, err2 := clock(rp.Constraint.EndTime.Text)
		if err := errors.Join(err1, err2); err != nil {
			return Price{}, err
		}
		if to <= from {
			to += 24 * time.Hour
		}
		pr.Daily = to - from
	}
	pr.Prices = refdiff.Prices{}
	for _, pf := range priceFields {
		v, ok := rp.Prices[pf.genai]
		if !ok {
			continue
		}
		base, err := decimal(v.base)
		if err != nil {
			return Price{}, fmt.Errorf("%s: %w", pf.genai, err)
		}
		pr.Prices[pf.field] = base
		if len(v.tiers) == 0 {
			continue
		}
		t := v.tiers[0]
		above, tp := t.Start.Text, ""
		if tp, err = decimal(t.Price); err != nil {
			return Price{}, fmt.Errorf("%s tier: %w", pf.genai, err)
		}
		if prev, ok := pr.Prices["long.above"]; ok && prev != above {
			return Price{}, fmt.Errorf("%s tier starts at %s, another at %s", pf.genai, above, prev)
		}
		pr.Prices["long.above"] = above
		pr.Prices["long."+pf.field] = tp
	}
	return pr, nil
}

// clock parses a time of day, "HH:MM" or "HH:MM:SS", with an optional "Z".
func clock(s string) (time.Duration, error) {
	for _, layout := range []string{"15:04:05Z07:00", "15:04:05", "15:04Z07:00", "15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second, nil
		}
	}
	return 0, fmt.Errorf("time of day %q: not HH:MM[:SS]", s)
}

// decimal turns a number as written in YAML into plain decimal text ("2.5e-1" → "0.25"),
// exactly.
func decimal(l pricefile.Scalar) (string, error) {
	if !l.Set {
		return "", errors.New("no price")
	}
	if len(l.Text) > 64 {
		return "", fmt.Errorf("%.64q…: too long for a price", l.Text)
	}
	// big.Rat also reads fractions, hexadecimal and binary exponents, which no price uses and
	// a huge binary exponent makes slow.
	if strings.Trim(l.Text, "0123456789.eE+-") != "" {
		return "", fmt.Errorf("%q: not a number", l.Text)
	}
	if i := strings.IndexAny(l.Text, "eE"); i >= 0 {
		var exp int
		if _, err := fmt.Sscanf(l.Text[i+1:], "%d", &exp); err != nil || exp < -40 || exp > 40 {
			return "", fmt.Errorf("%q: not a price", l.Text)
		}
	}
	r, ok := new(big.Rat).SetString(l.Text)
	if !ok {
		return "", fmt.Errorf("%q: not a number", l.Text)
	}
	s := r.FloatString(12)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s, nil
}

// at returns the model's prices in force at t: the latest start not after t among the
// prices without a daily window; when the model has only daily-window prices beside one
// without, the one covering the longest part of the day (DeepSeek's standard hours).
func (m *Model) at(t time.Time) (refdiff.Prices, bool) {
	var best *Price
	var daily *Price
	for i := range m.Prices {
		p := &m.Prices[i]
		if p.Start.After(t) {
			continue
		}
		if p.Daily > 0 {
			if daily == nil || p.Daily > daily.Daily {
				daily = p
			}
			continue
		}
		if best == nil || !p.Start.Before(best.Start) {
			best = p
		}
	}
	if daily != nil && (best == nil || daily.Daily > 12*time.Hour) {
		best = daily
	}
	if best == nil || len(best.Prices) == 0 {
		return nil, false
	}
	return best.Prices, true
}

// providerIDs are the genai-prices provider ids holding each tokenmeter provider's prices.
// Vertex AI's Gemini and Claude prices are in Google's file (which falls back to Anthropic's).
var providerIDs = map[string]string{
	"openai": "openai", "anthropic": "anthropic", "google": "google", "vertex_ai": "google",
	"azure": "azure", "bedrock": "aws", "mistral": "mistral", "deepseek": "deepseek",
	"xai": "x-ai", "groq": "groq", "cohere": "cohere",
}

// Reference implements refdiff.Reference over genai-prices' provider files.
type Reference struct {
	byID     map[string]*Provider
	resolver refdiff.Resolver
}

// NewReference builds a reference from provider files. A model is found by genai-prices' own
// match rules applied to its canonical name and aliases, in the provider's file and then its
// fallbacks; failing that, by a genai-prices model whose id (without a "regional." prefix)
// resolver resolves to the model, as Bedrock's ids carry versions the catalogue's names do not.
func NewReference(providers []Provider, resolver refdiff.Resolver) *Reference {
	r := &Reference{byID: map[string]*Provider{}, resolver: resolver}
	for i := range providers {
		r.byID[providers[i].ID] = &providers[i]
	}
	return r
}

// Find implements refdiff.Reference.
func (r *Reference) Find(provider string, m pricefile.Model, at time.Time) (refdiff.Entry, bool) {
	p := r.byID[providerIDs[strings.ToLower(provider)]]
	if p == nil {
		return refdiff.Entry{}, false
	}
	search := []*Provider{p}
	for _, id := range p.Fallbacks {
		if f := r.byID[id]; f != nil {
			search = append(search, f)
		}
	}
	found := func(gm *Model) (refdiff.Entry, bool) {
		prices, ok := gm.at(at)
		return refdiff.Entry{Provider: provider, Name: gm.ID, Prices: prices}, ok
	}
	for _, name := range append([]string{m.Name}, m.Aliases...) {
		for _, sp := range search {
			for i := range sp.Models {
				if sp.Models[i].Match.Matches(name) {
					return found(&sp.Models[i])
				}
			}
		}
	}
	if r.resolver != nil {
		for i := range p.Models {
			id := strings.TrimPrefix(p.Models[i].ID, "regional.")
			if name, ok := r.resolver.Model(provider, id); ok && name == m.Name {
				return found(&p.Models[i])
			}
		}
	}
	return refdiff.Entry{}, false
}

type rawProvider struct {
	ID        string     `yaml:"id"`
	Fallbacks []string   `yaml:"fallback_model_providers"`
	Models    []rawModel `yaml:"models"`
}

type rawModel struct {
	ID     string    `yaml:"id"`
	Match  rawClause `yaml:"match"`
	Prices rawPrices `yaml:"prices"`
}

type rawClause struct {
	Equals     *string     `yaml:"equals"`
	StartsWith *string     `yaml:"starts_with"`
	EndsWith   *string     `yaml:"ends_with"`
	Contains   *string     `yaml:"contains"`
	Regex      *string     `yaml:"regex"`
	Or         []rawClause `yaml:"or"`
	And        []rawClause `yaml:"and"`
}

// rawPrices is either one price (a mapping) or a list of conditional prices.
type rawPrices struct {
	list []rawConditional
}

func (r *rawPrices) UnmarshalYAML(n ast.Node) error {
	switch n.(type) {
	case *ast.SequenceNode:
		return yaml.NodeToValue(n, &r.list)
	case *ast.MappingNode:
		var one map[string]tiered
		if err := yaml.NodeToValue(n, &one); err != nil {
			return err
		}
		r.list = []rawConditional{{Prices: one}}
		return nil
	case *ast.NullNode:
		return nil
	}
	return fmt.Errorf("prices: want a mapping or a list, got %s", n.Type())
}

type rawConditional struct {
	Constraint struct {
		StartDate pricefile.Scalar `yaml:"start_date"`
		StartTime pricefile.Scalar `yaml:"start_time"`
		EndTime   pricefile.Scalar `yaml:"end_time"`
	} `yaml:"constraint"`
	Prices map[string]tiered `yaml:"prices"`
}

// tiered is a price that is a number, or {base, tiers: [{start, price}]}.
type tiered struct {
	base  pricefile.Scalar
	tiers []rawTier
}

type rawTier struct {
	Start pricefile.Scalar `yaml:"start"`
	Price pricefile.Scalar `yaml:"price"`
}

func (t *tiered) UnmarshalYAML(n ast.Node) error {
	if _, ok := n.(*ast.MappingNode); ok {
		var v struct {
			Base  pricefile.Scalar `yaml:"base"`
			Tiers []rawTier        `yaml:"tiers"`
		}
		if err := yaml.NodeToValue(n, &v); err != nil {
			return err
		}
		t.base, t.tiers = v.Base, v.Tiers
		return nil
	}
	return t.base.UnmarshalYAML(n)
}
