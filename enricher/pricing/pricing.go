// Package pricing prices usage events exactly: a Catalog, built from pricing files
// (schemas/pricefile), finds the model an event names and the price row in force at the
// event's time, and multiplies integer token counts by integer per-token prices.
package pricing

import (
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// Catalog answers "what did this call cost". It is immutable once built and safe for
// concurrent use.
type Catalog struct {
	providers map[string]*provider // by lower-case provider name
	version   string
}

type provider struct {
	name string // as written in its file
	key  string // name in lower case
	file string
	// byName holds the lower-case canonical names and aliases; canonical only the canonical
	// names, which are all a dated snapshot may resolve to.
	byName    map[string]*model
	canonical map[string]*model
}

type model struct {
	name string
	rows []row // oldest first
}

// row is one price row with every tier resolved, and the Version string of each tier built
// once, so that Price does not allocate.
type row struct {
	effective time.Time
	rates     [numTiers]pricefile.Rates
	has       [numTiers]bool
	version   [numTiers]string
}

// Tier indexes into row.
const (
	tierStandard = iota
	tierBatch
	tierFlex
	tierPriority
	numTiers
)

func tierName(i int) string {
	return [numTiers]string{event.TierStandard, event.TierBatch, event.TierFlex, event.TierPriority}[i]
}

// tierIndex maps a service tier as an event reports it to a row index; "" and any tier the
// catalogue does not know (OpenAI's "default", say) are the standard tier.
func tierIndex(tier string) int {
	for i := tierBatch; i < numTiers; i++ {
		if strings.EqualFold(tier, tierName(i)) {
			return i
		}
	}
	return tierStandard
}

// New builds a catalogue from parsed pricing files. It refuses two files for the same
// provider, and two models of one provider that claim the same name (canonical or alias,
// compared case-insensitively): an ambiguous name is a mistake in the files, not something to
// guess about at run time.
func New(files ...pricefile.File) (*Catalog, error) {
	c := &Catalog{providers: map[string]*provider{}}
	var errs []error
	for _, f := range files {
		key := lower(f.Provider)
		if prev, ok := c.providers[key]; ok {
			errs = append(errs, fmt.Errorf("provider %q is priced by both %s and %s", f.Provider, prev.file, f.Name))
			continue
		}
		p := &provider{name: f.Provider, key: key, file: f.Name, byName: map[string]*model{}, canonical: map[string]*model{}}
		c.providers[key] = p
		for _, fm := range f.Models {
			m := newModel(f.Provider, fm)
			for _, name := range append([]string{fm.Name}, fm.Aliases...) {
				k := lower(name)
				if other, ok := p.byName[k]; ok && other != m {
					errs = append(errs, fmt.Errorf("%s: name %q is claimed by models %q and %q", f.Name, name, other.name, m.name))
					continue
				}
				p.byName[k] = m
			}
			p.canonical[lower(fm.Name)] = m
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.version = version(files)
	return c, nil
}

func newModel(providerName string, fm pricefile.Model) *model {
	m := &model{name: fm.Name}
	for _, p := range fm.Prices {
		r := row{effective: p.Effective}
		r.rates[tierStandard], r.has[tierStandard] = p.Standard, true
		for i := tierBatch; i < numTiers; i++ {
			r.rates[i], r.has[i] = p.Tiers[tierName(i)]
		}
		for i := range numTiers {
			if r.has[i] {
				r.version[i] = fmt.Sprintf("%s/%s@%s/%s", providerName, fm.Name, p.Effective.Format(time.DateOnly), tierName(i))
			}
		}
		m.rows = append(m.rows, r)
	}
	slices.SortFunc(m.rows, func(a, b row) int { return a.effective.Compare(b.effective) })
	return m
}

// catalogFS holds the starter catalogue that Default loads.
//
//go:embed catalog/*.yaml
var catalogFS embed.FS

// Default returns the catalogue shipped with tokenmeter (the files in catalog/).
func Default() (*Catalog, error) {
	sub, err := fs.Sub(catalogFS, "catalog")
	if err != nil {
		return nil, err
	}
	c, err := load(sub)
	if err != nil {
		return nil, fmt.Errorf("load built-in pricing catalogue: %w", err)
	}
	return c, nil
}

// LoadDir builds a catalogue from every *.yaml file in dir (not its subdirectories).
func LoadDir(dir string) (*Catalog, error) {
	c, err := load(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("load pricing catalogue from %s: %w", dir, err)
	}
	return c, nil
}

func load(fsys fs.FS) (*Catalog, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no *.yaml pricing files")
	}
	var files []pricefile.File
	var errs []error
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f, err := pricefile.Parse(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return New(files...)
}

// Version is a short hash of the catalogue's content: provider, model and alias names and
// every price row. It changes when any price or name changes, and not when a file is only
// reformatted or its comments or source line change. Store it with the costs it produced.
func (c *Catalog) Version() string { return c.version }

func version(files []pricefile.File) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b pricefile.File) int { return strings.Compare(lower(a.Provider), lower(b.Provider)) })
	h := sha256.New()
	str := func(s string) {
		h.Write(binary.AppendUvarint(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	num := func(v int64) { h.Write(binary.AppendVarint(nil, v)) }
	rates := func(r pricefile.Rates) {
		for _, p := range []pricefile.PicoUSD{r.Input, r.CachedInput, r.CacheWrite, r.CacheWrite1h, r.Output, r.Reasoning} {
			num(int64(p))
		}
	}
	for _, f := range sorted {
		str(f.Provider)
		num(int64(len(f.Models)))
		for _, m := range f.Models {
			str(m.Name)
			num(int64(len(m.Aliases)))
			for _, a := range m.Aliases {
				str(a)
			}
			num(int64(len(m.Prices)))
			for _, p := range m.Prices {
				num(p.Effective.Unix())
				rates(p.Standard)
				for _, t := range pricefile.Tiers {
					if r, ok := p.Tiers[t]; ok {
						str(t)
						rates(r)
					}
				}
				str("")
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Quote is the price of one call.
type Quote struct {
	// Priced is false when the provider or model is unknown, no price row is in force at the
	// event's time, or the token counts break event.Tokens' invariants. An unpriced quote has
	// every other field zero: it must never be mistaken for a free call.
	Priced bool
	// Model is the canonical model name when priced.
	Model string
	// Version names the price row and tier used, e.g. "openai/gpt-4o@2024-10-01/batch".
	Version string
	// Cost is what the call cost; Savings what prompt caching saved on it, or, for a
	// cache hit, the whole cost it would have had.
	Cost    pricefile.PicoUSD
	Savings pricefile.PicoUSD
}

// maxTokens bounds each token count Price accepts. It is far above event.DefaultLimits, and
// low enough that one call's cost, at most 2·maxTokens·5·10^9 PicoUSD, fits an int64.
const maxTokens = 500_000_000

// maxName is how long a provider or model name may be before Price's lookup allocates.
const maxName = 128

// Price prices one call of model at provider, in service tier tier, made at time at.
//
// The model is looked up case-insensitively, after removing a leading "<provider>/": first
// as a canonical name or alias, then, without a dated snapshot suffix "-YYYY-MM-DD" or
// "-YYYYMMDD", as a canonical name. The price row is the one with the latest effective date
// not after at. A tier the row has no prices for (and "" or "standard") is priced at the
// standard prices, and the Version says "standard".
//
// Cost is (Input−CachedInput−CacheWrite)·input + CachedInput·cached_input +
// (CacheWrite−CacheWrite1h)·cache_write + CacheWrite1h·cache_write_1h +
// (Output−Reasoning)·output + Reasoning·reasoning, and Savings is
// CachedInput·(input−cached_input). When cacheHit, the application's own cache answered: Cost
// is 0 and Savings is the cost the call would have had.
//
// Price does not allocate.
func (c *Catalog) Price(providerName, modelName, tier string, at time.Time, t event.Tokens, cacheHit bool) Quote {
	if !valid(t) {
		return Quote{}
	}
	var buf [maxName]byte
	p := c.providers[string(appendLower(buf[:0], providerName))]
	if p == nil {
		return Quote{}
	}
	m := p.lookup(modelName)
	if m == nil {
		return Quote{}
	}
	i := len(m.rows) - 1
	for i >= 0 && m.rows[i].effective.After(at) {
		i--
	}
	if i < 0 {
		return Quote{}
	}
	r := &m.rows[i]
	ti := tierIndex(tier)
	if !r.has[ti] {
		ti = tierStandard
	}
	rates := &r.rates[ti]
	q := Quote{Priced: true, Model: m.name, Version: r.version[ti], Cost: cost(rates, t)}
	if cacheHit {
		q.Cost, q.Savings = 0, q.Cost
	} else {
		q.Savings = pricefile.PicoUSD(t.CachedInput) * (rates.Input - rates.CachedInput)
	}
	return q
}

func cost(r *pricefile.Rates, t event.Tokens) pricefile.PicoUSD {
	n := func(v int64) pricefile.PicoUSD { return pricefile.PicoUSD(v) }
	return n(t.Input-t.CachedInput-t.CacheWrite)*r.Input +
		n(t.CachedInput)*r.CachedInput +
		n(t.CacheWrite-t.CacheWrite1h)*r.CacheWrite +
		n(t.CacheWrite1h)*r.CacheWrite1h +
		n(t.Output-t.Reasoning)*r.Output +
		n(t.Reasoning)*r.Reasoning
}

// valid checks event.Tokens' invariants again, so that an event that skipped validation
// yields no quote rather than a negative or overflowed cost.
func valid(t event.Tokens) bool {
	for _, v := range [...]int64{t.Input, t.Output, t.CachedInput, t.CacheWrite, t.CacheWrite1h, t.Reasoning} {
		if v < 0 || v > maxTokens {
			return false
		}
	}
	return t.CachedInput+t.CacheWrite <= t.Input && t.CacheWrite1h <= t.CacheWrite && t.Reasoning <= t.Output
}

func (p *provider) lookup(name string) *model {
	var buf [maxName]byte
	b := appendLower(buf[:0], name)
	if len(b) > len(p.key)+1 && b[len(p.key)] == '/' && string(b[:len(p.key)]) == p.key {
		b = b[len(p.key)+1:]
	}
	if m := p.byName[string(b)]; m != nil {
		return m
	}
	if base, ok := trimSnapshot(b); ok {
		return p.canonical[string(base)]
	}
	return nil
}

// trimSnapshot removes a dated snapshot suffix, "-YYYY-MM-DD" or "-YYYYMMDD", from a model
// name.
func trimSnapshot(b []byte) ([]byte, bool) {
	n := len(b)
	if n > 11 && b[n-11] == '-' && b[n-6] == '-' && b[n-3] == '-' &&
		isDate(b[n-10:n-6], b[n-5:n-3], b[n-2:]) {
		return b[:n-11], true
	}
	if n > 9 && b[n-9] == '-' && isDate(b[n-8:n-4], b[n-4:n-2], b[n-2:]) {
		return b[:n-9], true
	}
	return nil, false
}

func isDate(y, m, d []byte) bool {
	num := func(b []byte) int {
		v := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	mm, dd := num(m), num(d)
	return num(y) >= 0 && mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31
}

// appendLower appends s with ASCII letters lower-cased. Names are compared with it on both
// sides, so a non-ASCII name simply has to match byte for byte.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func lower(s string) string { return string(appendLower(nil, s)) }
