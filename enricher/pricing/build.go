package pricing

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// New builds a catalogue from parsed pricing files; see Build.
func New(files ...pricefile.File) (*Catalog, error) { return Build(files, nil) }

// Build builds a catalogue from parsed pricing files and organisation overrides. It refuses,
// with an error naming the files and names involved, everything that would otherwise be a
// guess at run time: two files for one provider (or provider alias), two models of one
// provider that claim the same name (canonical, alias or deployment, compared
// case-insensitively), an override or discount for a name that is only an alias, a discount
// or deployment for a provider or model the catalogue does not have, and the same model
// overridden twice.
func Build(files []pricefile.File, overrides []pricefile.Overrides) (*Catalog, error) {
	b := builder{c: &Catalog{providers: map[string]*provider{}}, specs: map[*model]*modelSpec{}}
	for _, f := range files {
		p := b.provider(f.Provider, f.ProviderAliases, f.Name)
		p.match = f.Match
		for _, fm := range f.Models {
			b.model(p, fm, false, f.Name)
		}
	}
	for _, o := range overrides {
		for _, pm := range o.Models {
			p := b.c.providers[lower(pm.Provider)]
			if p == nil { // a private model of a provider no file prices
				p = b.provider(pm.Provider, nil, o.Name)
			}
			m := p.canonical[lower(pm.Model.Name)]
			switch {
			case m != nil && b.specs[m].explicitFrom != "":
				b.errorf("%s: model %q of provider %q is also overridden by %s", o.Name, pm.Model.Name, pm.Provider, b.specs[m].explicitFrom)
			case m != nil:
				spec := b.specs[m]
				spec.explicit, spec.explicitFrom = pm.Model.Prices, o.Name
				for _, a := range pm.Model.Aliases {
					b.claim(p, a, m, fmt.Sprintf("model %q of %s", m.name, o.Name))
				}
			case p.byName[lower(pm.Model.Name)] != nil:
				b.errorf("%s: %q is an alias of model %q of provider %q: override the model by its name", o.Name, pm.Model.Name, p.byName[lower(pm.Model.Name)].name, pm.Provider)
			default:
				b.model(p, pm.Model, true, o.Name)
			}
		}
	}
	for _, o := range overrides {
		for _, d := range o.Discounts {
			p := b.c.providers[lower(d.Provider)]
			where := fmt.Sprintf("%s: discount of %s%% from %s for provider %q", o.Name, d.Percent, d.Effective.Format(time.DateOnly), d.Provider)
			switch {
			case p == nil:
				b.errorf("%s: no pricing file has this provider", where)
			case d.Model == "":
				p.discounts = append(p.discounts, d)
			case p.canonical[lower(d.Model)] != nil:
				spec := b.specs[p.canonical[lower(d.Model)]]
				spec.discounts = append(spec.discounts, d)
			case p.lookup(d.Model) != nil:
				b.errorf("%s: model %q is not a model name (it means %q): name the model", where, d.Model, p.lookup(d.Model).name)
			default:
				b.errorf("%s: the catalogue has no model %q", where, d.Model)
			}
		}
	}
	for _, o := range overrides {
		for _, d := range o.Deployments {
			p := b.c.providers[lower(d.Provider)]
			where := fmt.Sprintf("%s: deployment %q of provider %q", o.Name, d.Name, d.Provider)
			if p == nil {
				b.errorf("%s: no pricing file has this provider", where)
				continue
			}
			m := p.lookup(d.Model)
			if m == nil {
				b.errorf("%s: the catalogue has no model %q", where, d.Model)
				continue
			}
			b.claim(p, d.Name, m, "deployment of "+o.Name)
		}
	}
	for _, p := range b.providers {
		for _, d := range sameDay(p.discounts) {
			b.errorf("provider %q: two discounts for every model take effect on %s", p.name, d.Format(time.DateOnly))
		}
	}
	var sameDayErrs []string // sorted, since map order is random
	for m, spec := range b.specs {
		for _, d := range sameDay(spec.discounts) {
			sameDayErrs = append(sameDayErrs, fmt.Sprintf("provider %q: two discounts for model %q take effect on %s", spec.provider.name, m.name, d.Format(time.DateOnly)))
		}
		m.rows = spec.rows()
	}
	slices.Sort(sameDayErrs)
	for _, e := range sameDayErrs {
		b.errs = append(b.errs, errors.New(e))
	}
	if err := errors.Join(b.errs...); err != nil {
		return nil, err
	}
	b.c.version = version(files, overrides)
	return b.c, nil
}

type builder struct {
	c         *Catalog
	providers []*provider
	specs     map[*model]*modelSpec
	errs      []error
}

// modelSpec is what a model's price rows are built from once every file is read.
type modelSpec struct {
	provider *provider
	name     string
	list     []pricefile.Price
	// explicit are the override rows that replace list prices from their first date on.
	explicit     []pricefile.Price
	explicitFrom string
	private      bool
	discounts    []pricefile.Discount // for this model only
}

func (b *builder) errorf(format string, args ...any) {
	b.errs = append(b.errs, fmt.Errorf(format, args...))
}

func (b *builder) provider(name string, aliases []string, file string) *provider {
	p := &provider{name: name, key: lower(name), file: file,
		byName: map[string]*model{}, canonical: map[string]*model{}, claimedBy: map[string]string{}}
	b.providers = append(b.providers, p)
	for _, n := range append([]string{name}, aliases...) {
		key := lower(n)
		if prev, ok := b.c.providers[key]; ok {
			if prev != p {
				b.errorf("provider %q is priced by both %s and %s", n, prev.file, file)
			}
			continue
		}
		b.c.providers[key] = p
		p.prefixes = append(p.prefixes, key+"/")
	}
	return p
}

func (b *builder) model(p *provider, fm pricefile.Model, private bool, file string) {
	m := &model{name: fm.Name}
	spec := &modelSpec{provider: p, name: fm.Name, private: private}
	if private {
		spec.explicit, spec.explicitFrom = fm.Prices, file
	} else {
		spec.list = fm.Prices
	}
	b.specs[m] = spec
	by := fmt.Sprintf("model %q", m.name)
	if file != p.file {
		by = fmt.Sprintf("model %q of %s", m.name, file)
	}
	for _, name := range append([]string{fm.Name}, fm.Aliases...) {
		b.claim(p, name, m, by)
	}
	if _, ok := p.canonical[lower(fm.Name)]; !ok {
		p.canonical[lower(fm.Name)] = m
	}
}

// claim records that name resolves to m, refusing a name already taken by another model.
func (b *builder) claim(p *provider, name string, m *model, by string) {
	k := lower(name)
	if other, ok := p.byName[k]; ok {
		if other != m {
			b.errorf("%s: name %q is claimed by %s and %s", p.file, name, p.claimedBy[k], by)
		}
		return
	}
	p.byName[k], p.claimedBy[k] = m, by
}

// sameDay returns the dates on which two of the discounts take effect.
func sameDay(ds []pricefile.Discount) []time.Time {
	var out []time.Time
	seen := map[time.Time]bool{}
	for _, d := range ds {
		if seen[d.Effective] && !slices.Contains(out, d.Effective) {
			out = append(out, d.Effective)
		}
		seen[d.Effective] = true
	}
	return out
}

// rows lays out the model's price rows. The list rows apply until the first explicit
// (override) row; the explicit rows after that. A new row starts at every date on which
// either the base row or the discount in force changes: the discount in force is the
// latest one for this model, or failing that the latest for the whole provider, that took
// effect at the row's date. Discounts apply to list rows only.
func (s *modelSpec) rows() []row {
	type base struct {
		p        pricefile.Price
		explicit bool
	}
	var bases []base
	for _, p := range s.list {
		if len(s.explicit) == 0 || p.Effective.Before(s.explicit[0].Effective) {
			bases = append(bases, base{p, false})
		}
	}
	for _, p := range s.explicit {
		bases = append(bases, base{p, true})
	}
	if len(bases) == 0 {
		return nil
	}
	var dates []time.Time
	for _, b := range bases {
		dates = append(dates, b.p.Effective)
	}
	for _, d := range append(slices.Clone(s.discounts), s.provider.discounts...) {
		if d.Effective.After(bases[0].p.Effective) {
			dates = append(dates, d.Effective)
		}
	}
	slices.SortFunc(dates, time.Time.Compare)
	dates = slices.Compact(dates)

	inForce := func(ds []pricefile.Discount, at time.Time) *pricefile.Discount {
		var cur *pricefile.Discount
		for i := range ds {
			if !ds[i].Effective.After(at) && (cur == nil || !ds[i].Effective.Before(cur.Effective)) {
				cur = &ds[i]
			}
		}
		return cur
	}
	var out []row
	prevBase, prevDisc := -1, (*pricefile.Discount)(nil)
	for _, at := range dates {
		bi := 0
		for i := range bases {
			if !bases[i].p.Effective.After(at) {
				bi = i
			}
		}
		var disc *pricefile.Discount
		if !bases[bi].explicit {
			if disc = inForce(s.discounts, at); disc == nil {
				disc = inForce(s.provider.discounts, at)
			}
			if disc != nil && disc.BasisPoints == 0 {
				disc = nil
			}
		}
		if bi == prevBase && disc == prevDisc {
			continue
		}
		prevBase, prevDisc = bi, disc
		suffix := ""
		switch {
		case bases[bi].explicit:
			suffix = "/org"
		case disc != nil:
			suffix = fmt.Sprintf("/discount=%s%%@%s", disc.Percent, disc.Effective.Format(time.DateOnly))
		}
		var bp int64
		if disc != nil {
			bp = disc.BasisPoints
		}
		out = append(out, newRow(s.provider.name, s.name, at, bases[bi].p, bp, suffix))
	}
	return out
}

// newRow resolves one price row, less bp basis points, in force from at, with the version
// strings built once so that Price does not allocate.
func newRow(providerName, modelName string, at time.Time, p pricefile.Price, bp int64, suffix string) row {
	disc := func(r pricefile.Rates) pricefile.Rates {
		if bp == 0 {
			return r
		}
		d := pricefile.Rates{
			Input: pricefile.Apply(r.Input, bp), CachedInput: pricefile.Apply(r.CachedInput, bp),
			CacheWrite: pricefile.Apply(r.CacheWrite, bp), CacheWrite1h: pricefile.Apply(r.CacheWrite1h, bp),
			Output: pricefile.Apply(r.Output, bp), Reasoning: pricefile.Apply(r.Reasoning, bp),
		}
		if r.Units != nil {
			d.Units = make(map[string]pricefile.PicoUSD, len(r.Units))
			for k, p := range r.Units {
				d.Units[k] = pricefile.Apply(p, bp)
			}
		}
		return d
	}
	r := row{effective: at}
	r.rates[tierStandard], r.has[tierStandard] = disc(p.Standard), true
	for i := tierBatch; i < numTiers; i++ {
		var tr pricefile.Rates
		tr, r.has[i] = p.Tiers[tierName(i)]
		r.rates[i] = disc(tr)
	}
	if lc := p.LongContext; lc != nil {
		r.longAbove = lc.Above
		r.longRates[tierStandard] = disc(lc.Standard)
		for i := tierBatch; i < numTiers; i++ {
			r.longRates[i] = disc(lc.Tiers[tierName(i)])
		}
	}
	for i := range numTiers {
		if r.has[i] {
			v := fmt.Sprintf("%s/%s@%s/%s", providerName, modelName, p.Effective.Format(time.DateOnly), tierName(i))
			r.version[i] = v + suffix
			if r.longAbove > 0 {
				r.longVersion[i] = v + "/long" + suffix
			}
		}
	}
	return r
}

// version hashes everything that decides a price: provider and model names and aliases,
// match rules, every price row, and every override. It changes when any of them changes,
// and not when a file is only reformatted or its comments or sources change.
func version(files []pricefile.File, overrides []pricefile.Overrides) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b pricefile.File) int { return strings.Compare(lower(a.Provider), lower(b.Provider)) })
	h := sha256.New()
	str := func(s string) {
		h.Write(binary.AppendUvarint(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	num := func(v int64) { h.Write(binary.AppendVarint(nil, v)) }
	strs := func(ss []string) {
		num(int64(len(ss)))
		for _, s := range ss {
			str(s)
		}
	}
	rates := func(r pricefile.Rates) {
		for _, p := range []pricefile.PicoUSD{r.Input, r.CachedInput, r.CacheWrite, r.CacheWrite1h, r.Output, r.Reasoning} {
			num(int64(p))
		}
		// Units are hashed only when a row has them, so that the version of a catalogue
		// without any stays what it was.
		if len(r.Units) > 0 {
			str("units")
			for _, k := range slices.Sorted(maps.Keys(r.Units)) {
				str(k)
				num(int64(r.Units[k]))
			}
		}
	}
	tiers := func(ts map[string]pricefile.Rates) {
		for _, t := range pricefile.Tiers {
			if r, ok := ts[t]; ok {
				str(t)
				rates(r)
			}
		}
		str("")
	}
	model := func(m pricefile.Model) {
		str(m.Name)
		strs(m.Aliases)
		num(int64(len(m.Prices)))
		for _, p := range m.Prices {
			num(p.Effective.Unix())
			rates(p.Standard)
			tiers(p.Tiers)
			if lc := p.LongContext; lc != nil {
				num(lc.Above)
				rates(lc.Standard)
				tiers(lc.Tiers)
			}
			str("")
		}
	}
	for _, f := range sorted {
		str(f.Provider)
		strs(f.ProviderAliases)
		strs(f.Match.StripPrefixes)
		if f.Match.StripVersionSuffix {
			num(1)
		} else {
			num(0)
		}
		num(int64(len(f.Models)))
		for _, m := range f.Models {
			model(m)
		}
	}
	if len(overrides) > 0 {
		str("overrides")
		sortedO := slices.Clone(overrides)
		slices.SortFunc(sortedO, func(a, b pricefile.Overrides) int { return strings.Compare(a.Name, b.Name) })
		for _, o := range sortedO {
			num(int64(len(o.Discounts)))
			for _, d := range o.Discounts {
				str(lower(d.Provider))
				str(lower(d.Model))
				num(d.Effective.Unix())
				num(d.BasisPoints)
			}
			num(int64(len(o.Models)))
			for _, m := range o.Models {
				str(lower(m.Provider))
				model(m.Model)
			}
			num(int64(len(o.Deployments)))
			for _, d := range o.Deployments {
				str(lower(d.Provider))
				str(d.Name)
				str(d.Model)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
