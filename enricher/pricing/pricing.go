// Package pricing prices usage events exactly: a Catalog, built from pricing files and
// organisation overrides (schemas/pricefile), finds the model an event names and the price
// row in force at the event's time (discounts and explicit rates resolved when the catalogue
// is built), and multiplies integer token counts by integer per-token prices.
//
// A catalogue is immutable: the enricher reloads a changed pricing directory (Dir, read once
// and parsed from the bytes read) by building a new Catalog and swapping a pointer, so an
// event is priced wholly with one catalogue. Every ambiguity — a name two models claim, a
// provider two files claim, a discount naming an alias — is an error when the catalogue is
// built, never a guess at run time.
package pricing

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
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
	// prefixes are the lower-case "<name>/" and "<alias>/" a model name may start with.
	prefixes []string
	match    pricefile.Match
	// byName holds the lower-case canonical names, aliases and deployment names; canonical
	// only the canonical names, which are all a dated snapshot may resolve to.
	byName    map[string]*model
	canonical map[string]*model
	// claimedBy says what put each byName entry there, for load-time error messages.
	claimedBy map[string]string
	// discounts apply to every model of the provider (overrides), by effective date.
	discounts []pricefile.Discount
}

type model struct {
	name string
	rows []row // oldest first
}

// row is one price row with every tier resolved, and the Version string of each tier built
// once, so that Price does not allocate. Long-context prices, when the row has them, apply to
// calls with more than longAbove input tokens.
type row struct {
	effective time.Time
	rates     [numTiers]pricefile.Rates
	has       [numTiers]bool
	version   [numTiers]string

	longAbove   int64 // 0: no long-context prices
	longRates   [numTiers]pricefile.Rates
	longVersion [numTiers]string
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
	d, err := readFS(fsys)
	if err != nil {
		return nil, err
	}
	return d.Catalog()
}

// Version is a short hash of the catalogue's content: provider, model and alias names and
// every price row. It changes when any price or name changes, and not when a file is only
// reformatted or its comments or source line change. Store it with the costs it produced.
func (c *Catalog) Version() string { return c.version }

// OtherProvider is the metric label of every provider the catalogue does not price.
const OtherProvider = "other"

// ProviderLabel is the canonical name of the provider called name (or one of its aliases, in
// any case), for a metric label; OtherProvider for a provider the catalogue does not price.
// Provider names come from clients: a label per name they send would let any client add
// series to the metrics without end.
func (c *Catalog) ProviderLabel(name string) string {
	var buf [maxName]byte
	if p := c.providers[string(appendLower(buf[:0], name))]; p != nil {
		return p.name
	}
	return OtherProvider
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

// UnitCost is what one unit key of an event cost: Count units (tokens, for the audio
// classes) at the row's price for the key.
type UnitCost struct {
	Key   string
	Count int64
	Cost  pricefile.PicoUSD
}

// maxTokens bounds each token count Price accepts. It is far above event.DefaultLimits, and
// low enough that one call's cost, at most 2·maxTokens·5·10^9 PicoUSD, fits an int64.
const maxTokens = 500_000_000

// maxName is how long a provider or model name may be before Price's lookup allocates.
const maxName = 128

// Price prices one call of model at provider, in service tier tier, made at time at.
//
// The model is looked up case-insensitively, after removing a leading "<provider>/" (or
// "<provider alias>/"): first as a canonical name, alias or deployment name, then with the
// file's match rules (one strip prefix, a Bedrock version suffix), then, without a dated
// snapshot suffix "-YYYY-MM-DD", "-YYYYMMDD" or "@YYYYMMDD", as a canonical name. The price row is the one with the latest effective date
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
	q, _ := c.PriceUnits(providerName, modelName, tier, at, t, nil, cacheHit)
	return q
}

// PriceUnits is Price for a call that also reports units (event.Units). Each unit key is
// priced by the row's price for the key as written, else for its class without the variant
// ("image_outputs" for "image_outputs:1024x1024:high"); a key with neither leaves the whole
// call unpriced — never free. The audio classes are parts of the token counts: they are
// priced at the row's audio rates, which default to its input and output rates (as audio
// tokens were priced before they were told apart), and the rest of the tokens at the text
// rates. Cost is that token cost plus the sum of every other key's count times its price.
// The second result holds each key's count and part of Cost (0 on a cache hit), sorted by
// key; it is nil when units is empty or the call is unpriced.
//
// PriceUnits allocates only when units is not empty.
func (c *Catalog) PriceUnits(providerName, modelName, tier string, at time.Time, t event.Tokens, units event.Units, cacheHit bool) (Quote, []UnitCost) {
	if !valid(t) || !validUnits(t, units) {
		return Quote{}, nil
	}
	var buf [maxName]byte
	p := c.providers[string(appendLower(buf[:0], providerName))]
	if p == nil {
		return Quote{}, nil
	}
	m := p.lookup(modelName)
	if m == nil {
		return Quote{}, nil
	}
	i := len(m.rows) - 1
	for i >= 0 && m.rows[i].effective.After(at) {
		i--
	}
	if i < 0 {
		return Quote{}, nil
	}
	r := &m.rows[i]
	ti := tierIndex(tier)
	if !r.has[ti] {
		ti = tierStandard
	}
	rates, version := &r.rates[ti], r.version[ti]
	if r.longAbove > 0 && t.Input > r.longAbove {
		rates, version = &r.longRates[ti], r.longVersion[ti]
	}
	q := Quote{Priced: true, Model: m.name, Version: version}
	var uc []UnitCost
	if len(units) == 0 {
		q.Cost = cost(rates, t)
	} else {
		var ok bool
		if q.Cost, uc, ok = unitCost(rates, t, units); !ok {
			return Quote{}, nil
		}
		if cacheHit {
			for i := range uc {
				uc[i].Cost = 0
			}
		}
	}
	if cacheHit {
		q.Cost, q.Savings = 0, q.Cost
	} else {
		q.Savings = pricefile.PicoUSD(t.CachedInput) * (rates.Input - rates.CachedInput)
	}
	return q, uc
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

// unitCost is cost for a call with units: its audio tokens at the audio rates, the rest of its
// tokens at the text rates, and every other unit at its price. ok is false when a key other
// than the audio classes has no price. The sum cannot overflow: see pricefile.MaxUSDPerUnit.
func unitCost(r *pricefile.Rates, t event.Tokens, units event.Units) (total pricefile.PicoUSD, out []UnitCost, ok bool) {
	out = make([]UnitCost, 0, len(units))
	for _, k := range units.SortedKeys() {
		price, found := r.Units[k]
		switch {
		case found:
		case k == event.UnitAudioInputTokens:
			price = r.Input
		case k == event.UnitAudioOutputTokens:
			price = r.Output
		default:
			class, variant, _ := event.UnitClass(k)
			if variant == "" {
				return 0, nil, false
			}
			if price, found = r.Units[class]; !found {
				return 0, nil, false
			}
		}
		n := units[k]
		c := pricefile.PicoUSD(n) * price
		out = append(out, UnitCost{Key: k, Count: n, Cost: c})
		total += c
	}
	text := t
	text.Input -= units[event.UnitAudioInputTokens]
	text.Output -= units[event.UnitAudioOutputTokens]
	return total + cost(r, text), out, true
}

// validUnits checks event.Units' rules again, like valid, so that a count beyond them can
// neither overflow a cost nor make the text part of the tokens negative.
func validUnits(t event.Tokens, units event.Units) bool {
	if len(units) > event.MaxUnitKeys {
		return false
	}
	for k, v := range units {
		if _, _, ok := event.UnitClass(k); !ok || v < 0 || !event.IsAudio(k) && v > event.MaxUnitCount {
			return false
		}
	}
	return units[event.UnitAudioInputTokens] <= t.Input-t.CachedInput-t.CacheWrite &&
		units[event.UnitAudioOutputTokens] <= t.Output-t.Reasoning
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

// lookup finds the model a name means: the name as written (lower-cased, without a leading
// "<provider>/"), then without one of the file's strip_prefixes, then without a Bedrock
// version suffix when the file asks for that, and finally, for a dated snapshot, the
// canonical name without the date. Each step runs only when the one before found nothing.
// A name with a strip prefix is first tried without its version and date but with the
// prefix, so that a prefixed model of its own keeps its versioned ids.
func (p *provider) lookup(name string) *model {
	var buf [maxName]byte
	b := appendLower(buf[:0], name)
	for _, pre := range p.prefixes {
		if len(b) > len(pre) && string(b[:len(pre)]) == pre {
			b = b[len(pre):]
			break
		}
	}
	if m := p.byName[string(b)]; m != nil {
		return m
	}
	for _, pre := range p.match.StripPrefixes {
		if len(b) > len(pre) && string(b[:len(pre)]) == pre {
			// A prefixed model of its own ("global.anthropic.claude-sonnet-4-5", priced apart
			// from the in-region model) is found under its versioned and dated ids first.
			if m := p.versionOrSnapshot(b); m != nil {
				return m
			}
			b = b[len(pre):]
			if m := p.byName[string(b)]; m != nil {
				return m
			}
			break
		}
	}
	return p.versionOrSnapshot(b)
}

// versionOrSnapshot looks b up without a Bedrock version suffix, when the file asks for
// that, then, for a dated snapshot, as the canonical name without the date.
func (p *provider) versionOrSnapshot(b []byte) *model {
	if p.match.StripVersionSuffix {
		if base, ok := trimVersion(b); ok {
			b = base
			if m := p.byName[string(b)]; m != nil {
				return m
			}
		}
	}
	if base, ok := trimSnapshot(b); ok {
		return p.canonical[string(base)]
	}
	return nil
}

// trimVersion removes a Bedrock model-id version suffix: "-v<digits>" optionally followed by
// ":<digits>" ("anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-pro-v1:0"), or a
// bare ":<digits>". A model whose versions differ in price ("anthropic.claude-v2:1") is
// named in full as an alias, which the exact lookup finds first.
func trimVersion(b []byte) ([]byte, bool) {
	end := len(b)
	if i := lastDigitsAfter(b, ':'); i > 0 {
		end = i - 1
	}
	if i := lastDigitsAfter(b[:end], 'v'); i > 1 && b[i-2] == '-' {
		return b[:i-2], true
	}
	if end < len(b) {
		return b[:end], true
	}
	return nil, false
}

// lastDigitsAfter returns the index of the first of the digits that end b, when at least one
// digit ends b and sep precedes them; 0 otherwise.
func lastDigitsAfter(b []byte, sep byte) int {
	i := len(b)
	for i > 0 && b[i-1] >= '0' && b[i-1] <= '9' {
		i--
	}
	if i == len(b) || i < 2 || b[i-1] != sep {
		return 0
	}
	return i
}

// trimSnapshot removes a dated snapshot suffix, "-YYYY-MM-DD" or "-YYYYMMDD", or Vertex AI's
// "@YYYYMMDD", from a model name.
func trimSnapshot(b []byte) ([]byte, bool) {
	n := len(b)
	if n > 11 && b[n-11] == '-' && b[n-6] == '-' && b[n-3] == '-' &&
		isDate(b[n-10:n-6], b[n-5:n-3], b[n-2:]) {
		return b[:n-11], true
	}
	if n > 9 && (b[n-9] == '-' || b[n-9] == '@') && isDate(b[n-8:n-4], b[n-4:n-2], b[n-2:]) {
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
