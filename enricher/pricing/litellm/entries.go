package litellm

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tokenmeter/tokenmeter/enricher/pricing/refdiff"
)

// statedFields maps LiteLLM's per-token fields to refdiff's field names. Long-context fields
// are the same with a threshold suffix (longContextThresholds).
var statedFields = []struct{ litellm, field string }{
	{"input_cost_per_token", "input"},
	{"cache_read_input_token_cost", "cached_input"},
	{"cache_creation_input_token_cost", "cache_write"},
	{"cache_creation_input_token_cost_above_1hr", "cache_write_1h"},
	{"output_cost_per_token", "output"},
	{"output_cost_per_reasoning_token", "reasoning"},
	{"input_cost_per_token_batches", "batch.input"},
	{"output_cost_per_token_batches", "batch.output"},
	{"input_cost_per_token_flex", "flex.input"},
	{"cache_read_input_token_cost_flex", "flex.cached_input"},
	{"output_cost_per_token_flex", "flex.output"},
	{"input_cost_per_token_priority", "priority.input"},
	{"cache_read_input_token_cost_priority", "priority.cached_input"},
	{"output_cost_per_token_priority", "priority.output"},
	{"input_cost_per_audio_token", "audio_input"},
	{"output_cost_per_audio_token", "audio_output"},
}

// Entries reads LiteLLM's model_prices_and_context_window.json as a reference to compare
// the catalogue with: one entry per model that has an input price, with the prices exactly
// as LiteLLM states them (converted to USD per 1M tokens) and nothing filled in. Providers
// are named as Convert names them; Bedrock's region-specific entries are left out. Notes
// list the entries left out and the numbers rounded.
func Entries(data []byte) (entries []refdiff.Entry, notes []string, err error) {
	doc, keys, err := decodeDoc(data)
	if err != nil {
		return nil, nil, fmt.Errorf("read litellm: %w", err)
	}
	for _, key := range keys {
		if key == "sample_spec" {
			continue
		}
		f, ok := decodeEntry(doc[key])
		if !ok {
			notes = append(notes, fmt.Sprintf("%s: skipped: not a JSON object", key))
			continue
		}
		e, problem := entry(key, f)
		if problem != "" {
			notes = append(notes, fmt.Sprintf("%s: skipped: %s", key, problem))
			continue
		}
		entries = append(entries, e)
	}
	return entries, notes, nil
}

// entry converts one LiteLLM model; problem says why it has none.
func entry(key string, f map[string]any) (e refdiff.Entry, problem string) {
	lp, _ := f["litellm_provider"].(string)
	if lp == "" {
		return e, "no litellm_provider"
	}
	provider, ok := providerNames[lp]
	if !ok {
		provider = lp
	}
	name := key
	for _, pre := range []string{lp + "/", provider + "/"} {
		if rest, ok := strings.CutPrefix(name, pre); ok {
			name = rest
			break
		}
	}
	if name == "" {
		return e, "no model name"
	}
	if provider == "bedrock" && strings.Contains(name, "/") {
		return e, "a region- or commitment-specific Bedrock price"
	}
	e = refdiff.Entry{Provider: provider, Name: name, Prices: refdiff.Prices{}}
	var problems []string
	set := func(litellmField, field string) {
		v, ok := f[litellmField]
		if !ok || v == nil {
			return
		}
		n, ok := v.(json.Number)
		if !ok {
			problems = append(problems, litellmField+" is not a number")
			return
		}
		s, _, err := perMillion(string(n))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %s: %v", litellmField, n, err))
			return
		}
		e.Prices[field] = s
	}
	for _, sf := range statedFields {
		set(sf.litellm, sf.field)
	}
	for _, lc := range longContextThresholds {
		before := len(e.Prices)
		for _, sf := range statedFields[:5] {
			set(sf.litellm+lc.suffix, "long."+sf.field)
		}
		if len(e.Prices) > before {
			e.Prices["long.above"] = fmt.Sprint(lc.above)
			break
		}
	}
	if len(problems) > 0 {
		return e, strings.Join(problems, "; ")
	}
	if _, ok := e.Prices["input"]; !ok {
		mode, _ := f["mode"].(string)
		return e, fmt.Sprintf("no input_cost_per_token (mode %q)", mode)
	}
	return e, ""
}
