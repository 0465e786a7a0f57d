// Package pricefile defines tokenmeter's pricing-file format: one YAML file per provider that
// states, for each model, its list prices per token class, since which date each price
// applies, and how service tiers change them. Parse turns a file into exact integer prices;
// the enricher's pricing.Catalog looks them up.
//
// The format (README.md beside this file says the same with an example):
//
//	provider: openai                      # required; the event's "provider" (case-insensitive)
//	source: "https://…, checked 2026-11-01" # where the prices come from and when they were checked
//	models:                               # required, at least one
//	  - model: gpt-4o                     # required; canonical name
//	    aliases: [gpt-4o-2024-08-06]      # optional exact extra names
//	    prices:                           # required, at least one row
//	      - effective: 2024-10-01         # required; UTC date from which the row applies
//	        input: "2.50"                 # required
//	        cached_input: "1.25"          # optional; default input
//	        cache_write: "3.125"          # optional, 5-minute cache write; default input
//	        cache_write_1h: "5.00"        # optional; default cache_write
//	        output: "10.00"               # required
//	        reasoning: "10.00"            # optional; default output
//	        tiers:                        # optional: batch, flex and/or priority
//	          batch: {input: "1.25", output: "5.00"}
//
// Every price is USD per 1M tokens written as a plain decimal with at most 6 decimals, from 0
// to MaxUSDPerMillion (quoted, so that YAML never sees a float; an unquoted number is read
// from its literal text all the same). Parse converts it exactly to PicoUSD per token.
//
// A tier entry overrides some or all fields of its row: a field the tier leaves out takes the
// row's own value for it, and the defaults above are applied after that merge (so a tier that
// sets only input also moves cached_input when the row leaves cached_input out). A cached
// read may not cost more than an uncached input token, in any tier.
//
// Names: dated snapshots "<model>-YYYY-MM-DD" and "<model>-YYYYMMDD" are matched to the
// canonical name by the catalogue, so they need no alias; an explicit model or alias with such
// a name (a snapshot priced differently) wins over that rule.
//
// Decoding is strict: unknown fields, duplicate keys, duplicate effective dates and unknown
// tiers are errors. Errors name the file, the model, the price row and the field.
package pricefile

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Tiers are the service tiers a price row may override, as event.Usage.ServiceTier names
// them. The standard tier is the row itself.
var Tiers = []string{event.TierBatch, event.TierFlex, event.TierPriority}

// File is one parsed pricing file, with every default resolved.
type File struct {
	// Name is the file name given to Parse, used in errors.
	Name     string
	Provider string
	Source   string
	Models   []Model
}

// Model is one model's names and price history.
type Model struct {
	// Name is the canonical model name; Aliases are exact extra names.
	Name    string
	Aliases []string
	// Prices are sorted by Effective, oldest first; no two share a date.
	Prices []Price
}

// Price is one row of a model's price history.
type Price struct {
	// Effective is midnight UTC of the date from which the row applies, until the next row's.
	Effective time.Time
	// Standard are the prices of the standard tier.
	Standard Rates
	// Tiers holds the fully resolved prices of each tier the row names (see Tiers).
	Tiers map[string]Rates
}

// Rates are the per-token prices of one tier, every default resolved.
type Rates struct {
	Input        PicoUSD
	CachedInput  PicoUSD
	CacheWrite   PicoUSD // 5-minute cache write
	CacheWrite1h PicoUSD
	Output       PicoUSD
	Reasoning    PicoUSD
}

// Parse decodes and validates the pricing file called name (the name is only used in
// errors). It reports every problem it finds, joined, each naming the file, the model, the
// price row and the field:
//
//	openai.yaml: model "gpt-4o" price effective 2024-10-01: input "2.5x": not a decimal
func Parse(name string, data []byte) (File, error) {
	raw, err := decode(data)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", name, err)
	}
	p := parser{name: name}
	f := File{Name: name, Provider: raw.Provider, Source: raw.Source}
	if raw.Provider == "" {
		p.errorf("provider: missing")
	}
	if len(raw.Models) == 0 {
		p.errorf("models: missing")
	}
	for i, rm := range raw.Models {
		f.Models = append(f.Models, p.model(i, rm))
	}
	if err := errors.Join(p.errs...); err != nil {
		return File{}, err
	}
	return f, nil
}

// decode runs the YAML decoder. goccy/go-yaml v1.19.2 panics on some malformed documents
// (FuzzParse found "aliases: !00\n0:0", a nil dereference in decodeSlice); a pricing file is
// operator input, so such a document is reported as an error instead of taking the process
// down.
func decode(data []byte) (raw rawFile, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML (decoder panicked: %v)", r)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, &raw, yaml.Strict()); err != nil {
		return rawFile{}, errors.New(yaml.FormatError(err, false, false))
	}
	return raw, nil
}

type parser struct {
	name string
	errs []error
}

func (p *parser) errorf(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(p.name+": "+format, args...))
}

func (p *parser) model(i int, rm rawModel) Model {
	m := Model{Name: rm.Model, Aliases: rm.Aliases}
	where := fmt.Sprintf("model %q", rm.Model)
	if rm.Model == "" {
		where = fmt.Sprintf("model #%d", i+1)
		p.errorf("%s: model: missing", where)
	}
	for j, a := range rm.Aliases {
		if a == "" {
			p.errorf("%s: alias #%d: empty", where, j+1)
		}
	}
	if len(rm.Prices) == 0 {
		p.errorf("%s: prices: missing", where)
	}
	seen := map[time.Time]bool{}
	for j, rp := range rm.Prices {
		pr, ok := p.price(where, j, rp)
		if !ok {
			continue
		}
		if seen[pr.Effective] {
			p.errorf("%s: price effective %s: duplicate", where, pr.Effective.Format(time.DateOnly))
			continue
		}
		seen[pr.Effective] = true
		m.Prices = append(m.Prices, pr)
	}
	slices.SortFunc(m.Prices, func(a, b Price) int { return a.Effective.Compare(b.Effective) })
	return m
}

// price validates one row; ok is false when the row has any error.
func (p *parser) price(model string, j int, rp rawPrice) (pr Price, ok bool) {
	before := len(p.errs)
	where := fmt.Sprintf("%s price #%d", model, j+1)
	switch {
	case !rp.Effective.set:
		p.errorf("%s: effective: missing", where)
	default:
		eff, err := time.Parse(time.DateOnly, rp.Effective.text)
		if err != nil {
			p.errorf("%s: effective %q: not a date (want YYYY-MM-DD)", where, rp.Effective.text)
		} else {
			pr.Effective = eff
			where = fmt.Sprintf("%s price effective %s", model, rp.Effective.text)
		}
	}
	if !rp.Rates.Input.set {
		p.errorf("%s: input: missing", where)
	}
	if !rp.Rates.Output.set {
		p.errorf("%s: output: missing", where)
	}
	pr.Standard = p.rates(where, rp.Rates, rawRates{})
	names := make([]string, 0, len(rp.Tiers))
	for name := range rp.Tiers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(Tiers, name) {
			p.errorf("%s: tier %q: unknown (want %s)", where, name, strings.Join(Tiers, ", "))
			continue
		}
		if pr.Tiers == nil {
			pr.Tiers = map[string]Rates{}
		}
		pr.Tiers[name] = p.rates(where+": tier "+name, rp.Tiers[name], rp.Rates)
	}
	return pr, len(p.errs) == before
}

// rates converts one tier's prices, taking each field it leaves out from base, then
// resolving the defaults.
func (p *parser) rates(where string, r, base rawRates) Rates {
	conv := func(field string, v, b literal) (PicoUSD, bool) {
		inherited := !v.set
		if inherited {
			v = b
		}
		if !v.set {
			return 0, false
		}
		pico, err := ParseUSDPerMillion(v.text)
		if err != nil {
			if !inherited { // an inherited field was reported where it is written
				p.errorf("%s: %s %w", where, field, err)
			}
			return 0, false
		}
		return pico, true
	}
	var out Rates
	out.Input, _ = conv("input", r.Input, base.Input)
	out.Output, _ = conv("output", r.Output, base.Output)
	var ok bool
	if out.CachedInput, ok = conv("cached_input", r.CachedInput, base.CachedInput); !ok {
		out.CachedInput = out.Input
	}
	if out.CacheWrite, ok = conv("cache_write", r.CacheWrite, base.CacheWrite); !ok {
		out.CacheWrite = out.Input
	}
	if out.CacheWrite1h, ok = conv("cache_write_1h", r.CacheWrite1h, base.CacheWrite1h); !ok {
		out.CacheWrite1h = out.CacheWrite
	}
	if out.Reasoning, ok = conv("reasoning", r.Reasoning, base.Reasoning); !ok {
		out.Reasoning = out.Output
	}
	if out.CachedInput > out.Input {
		p.errorf("%s: cached_input %s above input %s", where, out.CachedInput.perMillion(), out.Input.perMillion())
	}
	return out
}

type rawFile struct {
	Provider string     `yaml:"provider"`
	Source   string     `yaml:"source"`
	Models   []rawModel `yaml:"models"`
}

type rawModel struct {
	Model   string     `yaml:"model"`
	Aliases []string   `yaml:"aliases"`
	Prices  []rawPrice `yaml:"prices"`
}

type rawPrice struct {
	Effective literal             `yaml:"effective"`
	Rates     rawRates            `yaml:",inline"`
	Tiers     map[string]rawRates `yaml:"tiers"`
}

type rawRates struct {
	Input        literal `yaml:"input"`
	CachedInput  literal `yaml:"cached_input"`
	CacheWrite   literal `yaml:"cache_write"`
	CacheWrite1h literal `yaml:"cache_write_1h"`
	Output       literal `yaml:"output"`
	Reasoning    literal `yaml:"reasoning"`
}

// literal keeps a scalar exactly as written, so that an unquoted 2.50 or 2024-10-01 is never
// turned into a float or a time by the YAML decoder.
type literal struct {
	text string
	set  bool
}

// UnmarshalYAML implements yaml.NodeUnmarshaler. It never fails: validation happens later,
// where the error can name the model and field.
func (l *literal) UnmarshalYAML(n ast.Node) error {
	switch n := n.(type) {
	case *ast.NullNode:
		*l = literal{}
	case *ast.StringNode:
		*l = literal{text: n.Value, set: true}
	case ast.ScalarNode:
		*l = literal{text: n.GetToken().Value, set: true}
	default:
		*l = literal{text: n.String(), set: true}
	}
	return nil
}
