// Package refdiff compares the catalogue's prices with a public reference's (LiteLLM's price
// file, pydantic's genai-prices), field by field, so that a maintainer sees exactly which
// rows to re-check. The readers of each reference live beside it (pricing/litellm,
// pricing/genaiprices) and produce Entries; Diff does the comparing.
package refdiff

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// Prices are what a reference states for one model, by field, in USD per 1M tokens as
// decimal text: "input", "cached_input", "cache_write", "cache_write_1h", "output",
// "reasoning", "audio_input", "audio_output"; "<tier>.<field>" for batch, flex and
// priority; "long.above" (a token count) and "long.<field>" for long-context prices. A field the reference does not state is
// absent, and is not compared.
type Prices map[string]string

// Entry is one reference's prices for one model of one provider.
type Entry struct {
	// Provider is tokenmeter's name of the provider ("google", not "gemini").
	Provider string
	// Name is the reference's name of the model, as it spells it.
	Name   string
	Prices Prices
}

// A Reference finds what it states for a model of the catalogue, if anything.
type Reference interface {
	Find(provider string, m pricefile.Model, at time.Time) (Entry, bool)
}

// Difference is one field of one model whose price differs from the reference's.
type Difference struct {
	Provider, Model string
	// Effective is the date of the catalogue row compared.
	Effective time.Time
	Field     string
	// Ours is the catalogue's price, "-" when the row does not price that tier or long
	// context; Theirs is the reference's, as it states it.
	Ours, Theirs string
	// RefName is the reference's name of the model.
	RefName string
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s@%s %s: catalogue %s, reference %s (%s)", d.Provider, d.Model,
		d.Effective.Format(time.DateOnly), d.Field, d.Ours, d.Theirs, d.RefName)
}

// Result is what Diff found.
type Result struct {
	// Compared counts the models the reference has a price for; Missing those it has not.
	Compared, Missing int
	// Differing counts the models with at least one difference.
	Differing   int
	Differences []Difference
}

// fields are the token classes compared, in the order differences are listed.
var fields = []string{"input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning", "audio_input", "audio_output"}

// Diff compares, for every model of files, the row in force at at (the first row when none
// is yet) with what ref states for it at that time, field by field, in file and model order.
func Diff(files []pricefile.File, ref Reference, at time.Time) Result {
	var res Result
	for _, f := range files {
		for _, m := range f.Models {
			e, ok := ref.Find(f.Provider, m, at)
			if !ok {
				res.Missing++
				continue
			}
			res.Compared++
			row := m.RowAt(at)
			before := len(res.Differences)
			add := func(field, ours, theirs string) {
				res.Differences = append(res.Differences, Difference{Provider: f.Provider, Model: m.Name,
					Effective: row.Effective, Field: field, Ours: ours, Theirs: theirs, RefName: e.Name})
			}
			compare(add, "", &row.Standard, e.Prices)
			for _, t := range pricefile.Tiers {
				r, ok := row.Tiers[t]
				var rp *pricefile.Rates
				if ok {
					rp = &r
				}
				compare(add, t+".", rp, e.Prices)
			}
			var long *pricefile.Rates
			if lc := row.LongContext; lc != nil {
				long = &lc.Standard
				if above, ok := e.Prices["long.above"]; ok && above != strconv.FormatInt(lc.Above, 10) {
					add("long.above", strconv.FormatInt(lc.Above, 10), above)
				}
			} else if above, ok := e.Prices["long.above"]; ok {
				add("long.above", "-", above)
			}
			compare(add, "long.", long, e.Prices)
			if len(res.Differences) > before {
				res.Differing++
			}
		}
	}
	return res
}

// compare reports every field of ours (nil: not priced) that differs from what theirs states
// under prefix.
func compare(add func(field, ours, theirs string), prefix string, ours *pricefile.Rates, theirs Prices) {
	for _, name := range fields {
		text, ok := theirs[prefix+name]
		if !ok {
			continue
		}
		p, err := pricefile.ParseUSDPerMillion(text)
		theirs := p.USDPerMillion()
		if err != nil {
			theirs = err.Error()
		}
		switch {
		case ours == nil:
			add(prefix+name, "-", theirs)
		case err != nil || p != field(ours, name):
			add(prefix+name, field(ours, name).USDPerMillion(), theirs)
		}
	}
}

func field(r *pricefile.Rates, name string) pricefile.PicoUSD {
	switch name {
	case "input":
		return r.Input
	case "cached_input":
		return r.CachedInput
	case "cache_write":
		return r.CacheWrite
	case "cache_write_1h":
		return r.CacheWrite1h
	case "output":
		return r.Output
	case "audio_input":
		// A row without an audio price charges audio tokens as text (pricing.PriceUnits).
		if p, ok := r.Units[event.UnitAudioInputTokens]; ok {
			return p
		}
		return r.Input
	case "audio_output":
		if p, ok := r.Units[event.UnitAudioOutputTokens]; ok {
			return p
		}
		return r.Output
	}
	return r.Reasoning
}

// Resolver says which catalogue model a provider's model name means (pricing.Catalog.Model).
type Resolver interface {
	Model(provider, name string) (string, bool)
}

// ByName is a Reference over entries named as events name models (LiteLLM's keys): each
// entry belongs to the catalogue model its name resolves to. When several do, the one named
// exactly as the model wins, then one named as an alias, then the shortest name.
type ByName struct {
	byModel map[string][]Entry // provider + "\x00" + model
}

// NewByName indexes entries by the catalogue model each one's name resolves to; entries no
// model claims are left out.
func NewByName(r Resolver, entries []Entry) *ByName {
	b := &ByName{byModel: map[string][]Entry{}}
	for _, e := range entries {
		if m, ok := r.Model(e.Provider, e.Name); ok {
			k := strings.ToLower(e.Provider) + "\x00" + m
			b.byModel[k] = append(b.byModel[k], e)
		}
	}
	return b
}

// Find implements Reference; ByName has no dates, so at does not matter.
func (b *ByName) Find(provider string, m pricefile.Model, _ time.Time) (Entry, bool) {
	es := b.byModel[strings.ToLower(provider)+"\x00"+m.Name]
	if len(es) == 0 {
		return Entry{}, false
	}
	rank := func(e Entry) int {
		switch {
		case strings.EqualFold(e.Name, m.Name):
			return 0
		case slices.ContainsFunc(m.Aliases, func(a string) bool { return strings.EqualFold(a, e.Name) }):
			return 1
		}
		return 2
	}
	return slices.MinFunc(es, func(a, b Entry) int {
		if c := rank(a) - rank(b); c != 0 {
			return c
		}
		if c := len(a.Name) - len(b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	}), true
}
