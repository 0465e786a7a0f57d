// Package litellm imports LiteLLM's model_prices_and_context_window.json into tokenmeter
// pricing files (schemas/pricefile), one per provider.
//
// LiteLLM states prices in USD per token as JSON numbers ("input_cost_per_token": 2.5e-06).
// Convert reads each number from its literal text as an exact decimal (math/big), never
// through a float64, and writes it in USD per 1M tokens. A number that is not a whole
// number of micro-dollars per 1M tokens (float noise such as 2.5000000000000004e-07) is
// rounded to 6 decimals and listed in Result.Notes. LiteLLM has no effective dates: every
// imported price takes effect on Options.Effective.
package litellm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// Options control an import.
type Options struct {
	// Effective is the date from which the imported prices apply (UTC, midnight).
	Effective time.Time
	// Source is written as each file's source, e.g. "LiteLLM model_prices_and_context_window.json @ v1.77.0".
	Source string
}

// Result is what an import produced.
type Result struct {
	// Files are the pricing files by file name ("openai.yaml"), each valid on its own and
	// together (they form a catalogue).
	Files map[string][]byte
	// Models counts the models written.
	Models int
	// Notes says, one line per model, what was left out, rounded or adjusted, and why.
	Notes []string
}

// providerNames maps LiteLLM's litellm_provider to tokenmeter's provider names (the shipped
// catalogue's files). Providers not listed keep LiteLLM's name.
var providerNames = map[string]string{
	"openai": "openai", "text-completion-openai": "openai",
	"anthropic": "anthropic",
	"gemini":    "google",
	"vertex_ai": "vertex_ai", "vertex_ai-language-models": "vertex_ai", "vertex_ai-anthropic_models": "vertex_ai",
	"bedrock": "bedrock", "bedrock_converse": "bedrock",
	"azure":   "azure",
	"mistral": "mistral", "codestral": "mistral",
	"deepseek": "deepseek",
	"xai":      "xai",
	"groq":     "groq",
	"cohere":   "cohere", "cohere_chat": "cohere",
}

// longContextThresholds are the LiteLLM field suffixes for long-context prices, most common
// first.
var longContextThresholds = []struct {
	suffix string
	above  int64
}{{"_above_200k_tokens", 200_000}, {"_above_128k_tokens", 128_000}}

// maxEntries bounds how many models one import may hold; LiteLLM's file has about 2,500.
const maxEntries = 100_000

// Convert turns the content of a model_prices_and_context_window.json into pricing files.
// It fails only when the document is not a JSON object of objects; a model that cannot be
// priced (no input price, a negative or absurd number, a cached price above the uncached
// one) is left out and named in Notes.
func Convert(data []byte, opt Options) (Result, error) {
	if opt.Effective.IsZero() {
		return Result{}, errors.New("import litellm: no effective date")
	}
	doc, keys, err := decodeDoc(data)
	if err != nil {
		return Result{}, fmt.Errorf("import litellm: %w", err)
	}

	res := Result{Files: map[string][]byte{}}
	note := func(format string, args ...any) { res.Notes = append(res.Notes, fmt.Sprintf(format, args...)) }
	byProvider := map[string][]model{}
	claimed := map[string]string{} // provider + "\x00" + lower-case name → LiteLLM key
	for _, key := range keys {
		if key == "sample_spec" {
			continue
		}
		fields, ok := decodeEntry(doc[key])
		if !ok {
			note("%s: skipped: not a JSON object", key)
			continue
		}
		m, provider, problem := convertModel(key, fields)
		if problem != "" {
			note("%s: skipped: %s", key, problem)
			continue
		}
		for _, n := range m.notes {
			note("%s: %s", key, n)
		}
		ck := provider + "\x00" + strings.ToLower(m.name)
		if first, ok := claimed[ck]; ok {
			note("%s: skipped: %s/%s is already imported from %q", key, provider, m.name, first)
			continue
		}
		claimed[ck] = key
		byProvider[provider] = append(byProvider[provider], m)
	}

	var files []pricefile.File
	providers := make([]string, 0, len(byProvider))
	for p := range byProvider {
		providers = append(providers, p)
	}
	slices.Sort(providers)
	for _, p := range providers {
		name := p + ".yaml"
		text := render(p, opt, byProvider[p])
		f, err := pricefile.Parse(name, text)
		if err != nil { // a bug in render or in the checks above, not in the input
			return Result{}, fmt.Errorf("import litellm: generated %s does not parse: %w", name, err)
		}
		files = append(files, f)
		res.Files[name] = text
		res.Models += len(byProvider[p])
	}
	if len(files) == 0 {
		return Result{}, errors.New("import litellm: no model with an input price")
	}
	if _, err := pricing.New(files...); err != nil {
		return Result{}, fmt.Errorf("import litellm: generated files do not form a catalogue: %w", err)
	}
	return res, nil
}

// decodeDoc decodes the top-level object of the file, keeping each entry undecoded, and
// returns its keys sorted.
func decodeDoc(data []byte) (map[string]json.RawMessage, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]json.RawMessage
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("decode JSON object: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("decode JSON object: data after the top-level object")
	}
	if len(doc) > maxEntries {
		return nil, nil, fmt.Errorf("%d entries, more than %d", len(doc), maxEntries)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return doc, keys, nil
}

// decodeEntry decodes one model's object, numbers kept as json.Number.
func decodeEntry(raw json.RawMessage) (map[string]any, bool) {
	var fields map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&fields); err != nil {
		return nil, false
	}
	return fields, true
}

// rates are prices in USD per 1M tokens as decimal text; "" is unset.
type rates struct {
	input, cached, write, write1h, output, reasoning string
}

type model struct {
	name  string
	std   rates
	tiers map[string]rates
	long  *rates
	above int64
	notes []string
}

// convertModel converts one LiteLLM entry; problem says why it cannot be imported.
func convertModel(key string, f map[string]any) (m model, provider, problem string) {
	lp, _ := f["litellm_provider"].(string)
	if lp == "" {
		return m, "", "no litellm_provider"
	}
	provider, ok := providerNames[lp]
	if !ok {
		provider = lp
		for _, c := range lp {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return m, "", fmt.Sprintf("provider %q is not a usable file name", lp)
			}
		}
	}
	m.name = key
	for _, pre := range []string{lp + "/", provider + "/"} {
		if rest, ok := strings.CutPrefix(m.name, pre); ok {
			m.name = rest
			break
		}
	}
	if provider == "bedrock" && strings.Contains(m.name, "/") {
		return m, "", "a region- or commitment-specific Bedrock price (the catalogue prices on-demand US East)"
	}
	if m.name == "" || len(m.name) > 128 {
		return m, "", "model name empty or longer than 128 bytes"
	}
	var problems []string
	price := func(field string) string {
		v, ok := f[field]
		if !ok || v == nil {
			return ""
		}
		n, ok := v.(json.Number)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not a number", field))
			return ""
		}
		s, rounded, err := perMillion(string(n))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %s: %v", field, n, err))
			return ""
		}
		if rounded {
			m.notes = append(m.notes, fmt.Sprintf("%s %s rounded to %s USD per 1M tokens", field, n, s))
		}
		return s
	}
	m.std = rates{
		input: price("input_cost_per_token"), cached: price("cache_read_input_token_cost"),
		write: price("cache_creation_input_token_cost"), write1h: price("cache_creation_input_token_cost_above_1hr"),
		output: price("output_cost_per_token"), reasoning: price("output_cost_per_reasoning_token"),
	}
	for _, t := range []struct{ tier, suffix string }{{"batch", "_batches"}, {"flex", "_flex"}, {"priority", "_priority"}} {
		r := rates{input: price("input_cost_per_token" + t.suffix), output: price("output_cost_per_token" + t.suffix),
			cached: price("cache_read_input_token_cost" + t.suffix)}
		if r.input == "" && r.output == "" {
			continue
		}
		if m.tiers == nil {
			m.tiers = map[string]rates{}
		}
		m.tiers[t.tier] = r
	}
	for _, lc := range longContextThresholds {
		r := rates{input: price("input_cost_per_token" + lc.suffix), output: price("output_cost_per_token" + lc.suffix),
			cached: price("cache_read_input_token_cost" + lc.suffix), write: price("cache_creation_input_token_cost" + lc.suffix)}
		if r.input == "" && r.output == "" {
			continue
		}
		if m.long != nil {
			m.notes = append(m.notes, fmt.Sprintf("long-context prices above %d tokens left out: only one threshold is imported", lc.above))
			continue
		}
		m.long, m.above = &r, lc.above
	}
	if len(problems) > 0 {
		return m, "", strings.Join(problems, "; ")
	}
	if m.std.input == "" {
		mode, _ := f["mode"].(string)
		return m, "", fmt.Sprintf("no input_cost_per_token (mode %q)", mode)
	}
	if m.std.output == "" {
		if mode, _ := f["mode"].(string); mode != "embedding" {
			return m, "", "no output_cost_per_token"
		}
		m.std.output = "0"
	}
	if less(m.std.input, m.std.cached) {
		return m, "", fmt.Sprintf("cache_read_input_token_cost (%s) above input_cost_per_token (%s) per 1M tokens", m.std.cached, m.std.input)
	}
	for tier, r := range m.tiers {
		in := or(r.input, m.std.input)
		if r.cached == "" && less(in, m.std.cached) {
			// The row's cached price would exceed the tier's input: the tier gives no
			// further discount on cached reads.
			r.cached = in
			m.tiers[tier] = r
			m.notes = append(m.notes, fmt.Sprintf("%s cached_input set to its input price %s (LiteLLM gives none)", tier, in))
		}
		if less(in, or(r.cached, m.std.cached)) {
			return m, "", fmt.Sprintf("%s cached input price above its input price", tier)
		}
	}
	if m.long != nil {
		l := m.long
		if l.input == "" {
			l.input = m.std.input
		}
		if l.output == "" {
			l.output = m.std.output
		}
		if l.cached == "" {
			l.cached = or(m.std.cached, l.input)
			if less(l.input, l.cached) {
				l.cached = l.input
			}
		}
		if l.write == "" {
			l.write = or(m.std.write, l.input)
		}
		l.write1h = or(m.std.write1h, l.write)
		if less(l.input, l.cached) {
			return m, "", "long-context cached input price above its input price"
		}
		if len(m.tiers) > 0 {
			// A long call in a tier needs its own price, which LiteLLM does not give.
			tiers := slices.Sorted(func(yield func(string) bool) {
				for t := range m.tiers {
					if !yield(t) {
						return
					}
				}
			})
			m.notes = append(m.notes, fmt.Sprintf("%s prices left out: LiteLLM gives no long-context price for them", strings.Join(tiers, ", ")))
			m.tiers = nil
		}
	}
	return m, provider, ""
}

var (
	million = big.NewRat(1_000_000, 1)
	maxRat  = big.NewRat(pricefile.MaxUSDPerMillion, 1)
)

// perMillion converts a JSON number of USD per token into USD per 1M tokens with at most 6
// decimals; rounded reports that digits beyond the 6th were dropped (rounded to nearest).
func perMillion(num string) (s string, rounded bool, err error) {
	if len(num) > 64 {
		return "", false, errors.New("too long for a price")
	}
	// big.Rat expands an exponent into digits: 1e-999999999 would take seconds and memory.
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(num[i+1:], "+"))
		if err != nil {
			return "", false, errors.New("not a number")
		}
		if exp < -40 || exp > 40 {
			return "", false, errors.New("exponent out of range for a price")
		}
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return "", false, errors.New("not a number")
	}
	if r.Sign() < 0 {
		return "", false, errors.New("negative")
	}
	r.Mul(r, million)
	if r.Cmp(maxRat) > 0 {
		return "", false, fmt.Errorf("above %d USD per 1M tokens", pricefile.MaxUSDPerMillion)
	}
	micro := new(big.Rat).Mul(r, million)
	s = r.FloatString(6)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s, !micro.IsInt(), nil
}

// less reports a < b for two decimal prices; "" is never less nor greater.
func less(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	x, _ := new(big.Rat).SetString(a)
	y, _ := new(big.Rat).SetString(b)
	return x.Cmp(y) < 0
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// render writes one provider's pricing file.
func render(provider string, opt Options, models []model) []byte {
	var b bytes.Buffer
	eff := opt.Effective.UTC().Format(time.DateOnly)
	fmt.Fprintf(&b, "# Imported from LiteLLM's model_prices_and_context_window.json by `tokenmeter pricing import litellm`.\n")
	fmt.Fprintf(&b, "# LiteLLM states no dates: every price below takes effect on %s. Review the prices,\n", eff)
	fmt.Fprintf(&b, "# then merge the models you want into the catalogue. Format: schemas/pricefile/README.md.\n")
	fmt.Fprintf(&b, "provider: %s\n", quote(provider))
	fmt.Fprintf(&b, "source: %s\n", quote(opt.Source))
	fmt.Fprintf(&b, "models:\n")
	slices.SortFunc(models, func(a, b model) int { return strings.Compare(a.name, b.name) })
	for _, m := range models {
		fmt.Fprintf(&b, "  - model: %s\n    prices:\n      - effective: %s\n", quote(m.name), eff)
		writeRates(&b, "        ", m.std)
		if len(m.tiers) > 0 {
			fmt.Fprintf(&b, "        tiers:\n")
			for _, t := range pricefile.Tiers {
				if r, ok := m.tiers[t]; ok {
					fmt.Fprintf(&b, "          %s: {%s}\n", t, inline(r))
				}
			}
		}
		if m.long != nil {
			fmt.Fprintf(&b, "        long_context:\n          above: %d\n", m.above)
			writeRates(&b, "          ", *m.long)
		}
	}
	return b.Bytes()
}

func fieldsOf(r rates) [][2]string {
	var out [][2]string
	for _, f := range [][2]string{{"input", r.input}, {"cached_input", r.cached}, {"cache_write", r.write},
		{"cache_write_1h", r.write1h}, {"output", r.output}, {"reasoning", r.reasoning}} {
		if f[1] != "" {
			out = append(out, f)
		}
	}
	return out
}

func writeRates(b *bytes.Buffer, indent string, r rates) {
	for _, f := range fieldsOf(r) {
		fmt.Fprintf(b, "%s%s: %q\n", indent, f[0], f[1])
	}
}

func inline(r rates) string {
	var parts []string
	for _, f := range fieldsOf(r) {
		parts = append(parts, fmt.Sprintf("%s: %q", f[0], f[1]))
	}
	return strings.Join(parts, ", ")
}

// quote writes s as a YAML double-quoted scalar. JSON's string syntax is a subset of it.
func quote(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
