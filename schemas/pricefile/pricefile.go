// Package pricefile defines tokenmeter's pricing-file format: one YAML file per provider that
// states, for each model, its list prices per token class, since which date each price
// applies, and how service tiers change them. Parse turns a file into exact integer prices;
// the enricher's pricing.Catalog looks them up.
//
// The format (README.md beside this file says the same, with every rule spelled out):
//
//	provider: bedrock                     # required; the event's "provider" (case-insensitive)
//	provider_aliases: [aws.bedrock]       # optional: other names of the provider
//	source: "https://…, as known 2025-11" # where the prices come from and when they were read
//	match:                                # optional name rules (see the catalogue's lookup)
//	  strip_prefixes: [us., eu.]
//	  strip_version_suffix: true
//	models:                               # required, at least one
//	  - model: anthropic.claude-sonnet-4-5 # required; canonical name
//	    aliases: [x]                      # optional exact extra names
//	    prices:                           # required, at least one row
//	      - effective: 2025-09-29         # required; UTC date from which the row applies
//	        source: "…"                   # optional: where this row was read
//	        checked: 2026-12-06           # optional: when the row was compared with refs
//	        refs: [litellm, genai-prices] # required with checked: public references compared
//	        ref_note: "…"                 # optional: why one reference, which one was followed
//	        input: "3.00"                 # required
//	        cached_input: "0.30"          # optional; default input
//	        cache_write: "3.75"           # optional, 5-minute cache write; default input
//	        cache_write_1h: "6.00"        # optional; default cache_write
//	        output: "15.00"               # required
//	        reasoning: "15.00"            # optional; default output
//	        audio_input: "40.00"          # optional: audio prompt tokens; default input
//	        audio_output: "80.00"         # optional: audio output tokens; default output
//	        units:                        # optional: USD per unit (event.Units keys); no default
//	          web_search_calls: "0.01"
//	          "image_outputs:1024x1024:high": "0.167"
//	        tiers:                        # optional: batch, flex and/or priority
//	          batch: {input: "1.50", output: "7.50"}
//	        long_context:                 # optional: calls with more than `above` input tokens
//	          above: 200000
//	          input: "6.00"
//	          output: "22.50"
//	          tiers: {batch: {input: "3.00", output: "11.25"}}  # exactly the row's tiers
//
// ParseOverrides reads an organisation's overrides file (overrides.go): discounts, explicit
// rates, private models and deployment names.
//
// A unit price is USD per unit (a search, an image, a request) with at most 12 decimals, from 0
// to MaxUSDPerUnit. Tiers and long_context inherit units and audio prices key by key, like
// the token classes. A unit key an event reports that its row does not price makes the event
// unpriced: units have no default. Audio tokens the row has no audio price for cost what its
// text tokens cost (the catalogue applies that default, so that Units holds only what the file
// says).
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
	"maps"
	"slices"
	"strconv"
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
	// ProviderAliases are other names events use for the same provider ("aws.bedrock" for
	// "bedrock"), matched case-insensitively like Provider.
	ProviderAliases []string
	Source          string
	Match           Match
	Models          []Model
}

// Match says how the catalogue turns the model names this provider's events carry into the
// names of this file, beyond the rules every provider gets (case, "<provider>/" prefix, dated
// snapshot suffix).
type Match struct {
	// StripPrefixes are leading parts the catalogue removes (at most one, the first that
	// matches) when a name is not found as written: Bedrock's cross-region inference profiles
	// "us.", "eu.", "apac.", a router's "azure/". Lower-case.
	StripPrefixes []string
	// StripVersionSuffix removes a Bedrock model-id version, "-v1:0", "-v2" or ":0", when a
	// name is not found as written.
	StripVersionSuffix bool
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
	// LongContext, when not nil, prices a whole call whose input tokens exceed
	// LongContext.Above at its own rates, in every tier.
	LongContext *LongContext
	// Source says where this row's prices were read and when, when it differs from the
	// file's (a price-change announcement, say). It does not change Version.
	Source string
	// Checked is the date (midnight UTC) on which the row's prices were last compared with
	// the public references named in Refs ("litellm", "genai-prices", a URL); zero when the
	// file does not say. RefNote says why fewer references than usual were available, or
	// which one was followed where they disagree.
	Checked time.Time
	Refs    []string
	RefNote string
}

// LongContext are the prices of a row for calls with more than Above input tokens (all prompt
// tokens, cached reads and cache writes included), as Anthropic and Google charge them: every
// token of such a call, output included, is priced at these rates.
type LongContext struct {
	Above    int64
	Standard Rates
	// Tiers has an entry for every tier of the row, and no other.
	Tiers map[string]Rates
}

// RatesFor returns the rates a call in tier with input tokens pays under this row: the
// long-context rates above the threshold, the tier's when the row prices that tier, the
// standard rates otherwise.
func (p *Price) RatesFor(tier string, input int64) Rates {
	std, tiers := p.Standard, p.Tiers
	if p.LongContext != nil && input > p.LongContext.Above {
		std, tiers = p.LongContext.Standard, p.LongContext.Tiers
	}
	if r, ok := tiers[tier]; ok {
		return r
	}
	return std
}

// Rates are the per-token prices of one tier, every default resolved.
type Rates struct {
	Input        PicoUSD
	CachedInput  PicoUSD
	CacheWrite   PicoUSD // 5-minute cache write
	CacheWrite1h PicoUSD
	Output       PicoUSD
	Reasoning    PicoUSD
	// Units are the prices of the unit keys (event.Units) the row states: PicoUSD per unit,
	// and per token for the audio classes (written audio_input and audio_output, per 1M
	// tokens). nil when it states none. A unit key it does not hold has no price (an image
	// priced as anything else would be wrong); an audio class it does not hold costs Input
	// or Output, which the catalogue applies.
	Units map[string]PicoUSD
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
	f := File{Name: name, Provider: raw.Provider, ProviderAliases: raw.ProviderAliases, Source: raw.Source,
		Match: Match{StripVersionSuffix: raw.Match.StripVersionSuffix}}
	if raw.Provider == "" {
		p.errorf("provider: missing")
	}
	for i, a := range raw.ProviderAliases {
		if a == "" {
			p.errorf("provider_aliases #%d: empty", i+1)
		}
	}
	for i, pre := range raw.Match.StripPrefixes {
		if pre == "" {
			p.errorf("match: strip_prefixes #%d: empty", i+1)
			continue
		}
		f.Match.StripPrefixes = append(f.Match.StripPrefixes, strings.ToLower(pre))
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
	err = decodeInto(data, &raw)
	return raw, err
}

// decodeInto decodes strictly into v, turning a decoder panic into an error.
func decodeInto(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML (decoder panicked: %v)", r)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, v, yaml.Strict()); err != nil {
		return errors.New(yaml.FormatError(err, false, false))
	}
	return nil
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
	pr.Source = rp.Source
	pr.Refs, pr.RefNote = rp.Refs, rp.RefNote
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
	pr.Checked = p.checked(where, rp)
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
	if rp.LongContext != nil {
		// A long call's units and audio tokens cost what the row says unless the block says
		// otherwise.
		rl := *rp.LongContext
		rl.Rates.AudioInput = or(rl.Rates.AudioInput, rp.Rates.AudioInput)
		rl.Rates.AudioOutput = or(rl.Rates.AudioOutput, rp.Rates.AudioOutput)
		if len(rp.Rates.Units) > 0 {
			merged := maps.Clone(rp.Rates.Units)
			maps.Copy(merged, rl.Rates.Units)
			rl.Rates.Units = merged
		}
		pr.LongContext = p.longContext(where+": long_context", rl, names)
	}
	return pr, len(p.errs) == before
}

// checked validates a row's record of its check: a date and the references it was compared
// with go together, and a reference is named once.
func (p *parser) checked(where string, rp rawPrice) time.Time {
	var at time.Time
	if rp.Checked.set {
		var err error
		if at, err = time.Parse(time.DateOnly, rp.Checked.text); err != nil {
			p.errorf("%s: checked %q: not a date (want YYYY-MM-DD)", where, rp.Checked.text)
		}
	}
	switch {
	case rp.Checked.set && len(rp.Refs) == 0:
		p.errorf("%s: refs: missing (checked says when, refs must say against what)", where)
	case !rp.Checked.set && len(rp.Refs) > 0:
		p.errorf("%s: checked: missing (refs are named, checked must say when)", where)
	case !rp.Checked.set && rp.RefNote != "":
		p.errorf("%s: ref_note without checked and refs", where)
	}
	seen := map[string]bool{}
	for i, r := range rp.Refs {
		switch {
		case strings.TrimSpace(r) == "":
			p.errorf("%s: refs #%d: empty", where, i+1)
		case seen[r]:
			p.errorf("%s: refs %q: named twice", where, r)
		}
		seen[r] = true
	}
	return at
}

// longContext validates a row's long_context block. Its tiers must be exactly the row's:
// a long call in a tier the block left out would otherwise fall back to standard
// long-context prices (twice the batch price, say) without anybody having said so.
func (p *parser) longContext(where string, rl rawLongContext, rowTiers []string) *LongContext {
	lc := &LongContext{}
	switch {
	case !rl.Above.set:
		p.errorf("%s: above: missing", where)
	default:
		n, err := strconv.ParseInt(rl.Above.text, 10, 64)
		if err != nil || n < 1 || n > maxThreshold {
			p.errorf("%s: above %q: not a token count from 1 to %d", where, rl.Above.text, maxThreshold)
		}
		lc.Above = n
	}
	if !rl.Rates.Input.set {
		p.errorf("%s: input: missing", where)
	}
	if !rl.Rates.Output.set {
		p.errorf("%s: output: missing", where)
	}
	lc.Standard = p.rates(where, rl.Rates, rawRates{})
	names := make([]string, 0, len(rl.Tiers))
	for name := range rl.Tiers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !slices.Contains(rowTiers, name) {
			p.errorf("%s: tier %q: the row does not price this tier", where, name)
			continue
		}
		if lc.Tiers == nil {
			lc.Tiers = map[string]Rates{}
		}
		lc.Tiers[name] = p.rates(where+": tier "+name, rl.Tiers[name], rl.Rates)
	}
	for _, name := range rowTiers {
		if _, ok := rl.Tiers[name]; !ok && slices.Contains(Tiers, name) {
			p.errorf("%s: tier %s: missing (the row prices %s, so a long %s call needs its price too)", where, name, name, name)
		}
	}
	return lc
}

// maxThreshold bounds long_context.above: far beyond any context window, and a typo in
// the other direction (200000000) is caught.
const maxThreshold = 100_000_000

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
	out.Units = p.units(where, r, base)
	return out
}

// units converts the per-unit prices and the audio token prices of one tier, each key the
// tier leaves out taken from base. A unit key is one event.UnitClass accepts, other than the
// audio classes, which are written as audio_input and audio_output.
func (p *parser) units(where string, r, base rawRates) map[string]PicoUSD {
	var out map[string]PicoUSD
	put := func(key string, pico PicoUSD) {
		if out == nil {
			out = map[string]PicoUSD{}
		}
		out[key] = pico
	}
	for _, a := range [...]struct {
		field, key string
		v, b       literal
	}{
		{"audio_input", event.UnitAudioInputTokens, r.AudioInput, base.AudioInput},
		{"audio_output", event.UnitAudioOutputTokens, r.AudioOutput, base.AudioOutput},
	} {
		v, own := a.v, a.v.set
		if !own {
			v = a.b
		}
		if !v.set {
			continue
		}
		pico, err := ParseUSDPerMillion(v.text)
		if err != nil {
			if own { // an inherited field was reported where it is written
				p.errorf("%s: %s %w", where, a.field, err)
			}
			continue
		}
		put(a.key, pico)
	}
	keys := make([]string, 0, len(base.Units)+len(r.Units))
	for k := range base.Units {
		if _, ok := r.Units[k]; !ok {
			keys = append(keys, k)
		}
	}
	for k := range r.Units {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v, own := r.Units[k]
		if !own {
			v = base.Units[k]
		}
		if _, _, ok := event.UnitClass(k); !ok || event.IsAudio(k) {
			if own {
				p.errorf("%s: units: key %q is not a unit (want %s, %s or %s, optionally with \":<variant>\"; audio is priced by audio_input and audio_output)",
					where, k, event.UnitWebSearchCalls, event.UnitImageOutputs, event.UnitRequests)
			}
			continue
		}
		if !v.set {
			if own {
				p.errorf("%s: units: %s: no price", where, k)
			}
			continue
		}
		pico, err := ParseUSDPerUnit(v.text)
		if err != nil {
			if own {
				p.errorf("%s: units: %s %w", where, k, err)
			}
			continue
		}
		put(k, pico)
	}
	return out
}

type rawFile struct {
	Provider        string     `yaml:"provider"`
	ProviderAliases []string   `yaml:"provider_aliases"`
	Source          string     `yaml:"source"`
	Match           rawMatch   `yaml:"match"`
	Models          []rawModel `yaml:"models"`
}

type rawMatch struct {
	StripPrefixes      []string `yaml:"strip_prefixes"`
	StripVersionSuffix bool     `yaml:"strip_version_suffix"`
}

type rawLongContext struct {
	Above literal             `yaml:"above"`
	Rates rawRates            `yaml:",inline"`
	Tiers map[string]rawRates `yaml:"tiers"`
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
	// LongContext is a pointer so that an absent block and an empty one differ.
	LongContext *rawLongContext `yaml:"long_context"`
	Source      string          `yaml:"source"`
	Checked     literal         `yaml:"checked"`
	Refs        []string        `yaml:"refs"`
	RefNote     string          `yaml:"ref_note"`
}

type rawRates struct {
	Input        literal            `yaml:"input"`
	CachedInput  literal            `yaml:"cached_input"`
	CacheWrite   literal            `yaml:"cache_write"`
	CacheWrite1h literal            `yaml:"cache_write_1h"`
	Output       literal            `yaml:"output"`
	Reasoning    literal            `yaml:"reasoning"`
	AudioInput   literal            `yaml:"audio_input"`
	AudioOutput  literal            `yaml:"audio_output"`
	Units        map[string]literal `yaml:"units"`
}

// or returns v when it is set, else def.
func or(v, def literal) literal {
	if v.set {
		return v
	}
	return def
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
