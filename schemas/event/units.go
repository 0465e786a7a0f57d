package event

import (
	"slices"
	"strings"
)

// Units are the charges of one call that are not text tokens, by unit key: web-search tool
// calls, generated images, audio tokens, per-request fees. The catalogue prices each key per
// unit (audio per million tokens); a key the call's price row does not price makes the whole
// event unpriced, never free.
//
// A key is a unit class, optionally followed by a variant that decides the price:
//
//	web_search_calls[:<variant>]   provider-side search tool calls ("web_search_calls:high",
//	                               the search context size where it changes the price)
//	image_outputs[:<variant>]      images generated ("image_outputs:1024x1024:high")
//	requests[:<variant>]           per-request fees ("requests:high")
//	audio_input_tokens             uncached audio prompt tokens, a part of input_tokens
//	audio_output_tokens            audio output tokens, a part of output_tokens
//
// A variant is one or more parts of [a-z0-9._-] joined by ':'. The audio classes take no
// variant: like cached and reasoning tokens they are parts of the token counts (audio input
// within input_tokens − cached_input_tokens − cache_write_tokens, audio output within
// output_tokens − reasoning_tokens), priced at the model's audio rates instead of its text
// rates. See Validate for the bounds.
type Units map[string]int64

// Unit classes: the part of a unit key before its variant.
const (
	UnitWebSearchCalls    = "web_search_calls"
	UnitImageOutputs      = "image_outputs"
	UnitRequests          = "requests"
	UnitAudioInputTokens  = "audio_input_tokens"
	UnitAudioOutputTokens = "audio_output_tokens"
)

// UnitClasses lists every unit class, in the order errors name them.
var UnitClasses = []string{UnitWebSearchCalls, UnitImageOutputs, UnitRequests, UnitAudioInputTokens, UnitAudioOutputTokens}

// Bounds of the units of one call. They are constants, not Limits, because the enricher's
// exact arithmetic relies on them: MaxUnitKeys counts of at most MaxUnitCount units at the
// catalogue's highest per-unit price (pricefile.MaxUSDPerUnit) add at most 1.6e18 picodollars
// to a call's cost, which keeps every cost within an int64.
const (
	// MaxUnitKeys bounds the number of keys of Units.
	MaxUnitKeys = 16
	// MaxUnitKey bounds the length of a key in bytes.
	MaxUnitKey = 64
	// MaxUnitCount bounds the count of every key but the audio tokens, which are bounded by
	// the token counts they are part of: 10,000 searches, images or requests in one call is
	// far beyond any provider's limits.
	MaxUnitCount = 10_000
)

// UnitClass splits a unit key into its class and variant ("image_outputs:1024x1024:high" →
// "image_outputs", "1024x1024:high"). ok is false when the key is not well formed: an unknown
// class, a variant on an audio class, or a variant with an empty part or a character outside
// [a-z0-9._-].
func UnitClass(key string) (class, variant string, ok bool) {
	class, variant, hasVariant := strings.Cut(key, ":")
	switch class {
	case UnitWebSearchCalls, UnitImageOutputs, UnitRequests:
	case UnitAudioInputTokens, UnitAudioOutputTokens:
		if hasVariant {
			return "", "", false
		}
	default:
		return "", "", false
	}
	if hasVariant && !validVariant(variant) {
		return "", "", false
	}
	return class, variant, true
}

func validVariant(v string) bool {
	if v == "" || v[0] == ':' || v[len(v)-1] == ':' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		case c == ':' && v[i-1] != ':':
		default:
			return false
		}
	}
	return true
}

// IsAudio reports whether key is one of the audio token classes, which are parts of the
// token counts rather than charges of their own.
func IsAudio(key string) bool {
	return key == UnitAudioInputTokens || key == UnitAudioOutputTokens
}

// SortedKeys returns the keys of u in byte order, the order in which every stage carries them.
func (u Units) SortedKeys() []string {
	keys := make([]string, 0, len(u))
	for k := range u {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validate checks units against the bounds above and against the token counts t that the
// audio classes are parts of. Keys are checked in sorted order, so that an event with two
// bad keys is always rejected with the same message.
func (u Units) validate(t *Tokens, maxTokens int64) error {
	if len(u) == 0 {
		return nil
	}
	if len(u) > MaxUnitKeys {
		return fieldErr("units", "%d keys exceed the limit of %d", len(u), MaxUnitKeys)
	}
	for _, k := range u.SortedKeys() {
		v := u[k]
		if len(k) > MaxUnitKey {
			return fieldErr("units", "key %q is %d bytes long, more than the limit of %d", clip(k), len(k), MaxUnitKey)
		}
		if _, _, ok := UnitClass(k); !ok {
			return fieldErr("units", "key %q is not a unit (want %s, the first three optionally with \":<variant>\" of [a-z0-9._-])",
				clip(k), strings.Join(UnitClasses, ", "))
		}
		field := "units." + k
		switch {
		case v < 0:
			return fieldErr(field, "%d is negative", v)
		case IsAudio(k) && v > maxTokens:
			return fieldErr(field, "%d exceeds the limit of %d tokens per call", v, maxTokens)
		case !IsAudio(k) && v > MaxUnitCount:
			return fieldErr(field, "%d exceeds the limit of %d per call", v, MaxUnitCount)
		}
	}
	// Written as differences, like Tokens.validate: the token counts are already bounded.
	if a := u[UnitAudioInputTokens]; a > t.Input-t.CachedInput-t.CacheWrite {
		return fieldErr("units", "audio_input_tokens (%d) exceed input_tokens (%d) less cached_input_tokens (%d) and cache_write_tokens (%d), which include them",
			a, t.Input, t.CachedInput, t.CacheWrite)
	}
	if a := u[UnitAudioOutputTokens]; a > t.Output-t.Reasoning {
		return fieldErr("units", "audio_output_tokens (%d) exceed output_tokens (%d) less reasoning_tokens (%d), which include them",
			a, t.Output, t.Reasoning)
	}
	return nil
}
