package event

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits bound what a single event may contain. They are deliberately generous for honest
// traffic and tight enough that a hostile or broken client cannot blow up a stage's memory or
// a ClickHouse column.
type Limits struct {
	// MaxFuture is how far ahead of the receiver's clock an event's time may be.
	MaxFuture time.Duration
	// MaxAge is how far in the past an event's time may be (late events are welcome, but a
	// year-old event is almost certainly a bug in the sender).
	MaxAge time.Duration
	// MaxTokens bounds every token count of one call.
	MaxTokens int64
	// MaxTags bounds the number of tags; MaxTagKey and MaxTagValue their lengths in bytes.
	MaxTags, MaxTagKey, MaxTagValue int
	// MaxID bounds the id; MaxString every other string field.
	MaxID, MaxString int
}

// DefaultLimits are the limits the collector and the emitter apply unless configured.
var DefaultLimits = Limits{
	MaxFuture:   5 * time.Minute,
	MaxAge:      35 * 24 * time.Hour,
	MaxTokens:   100_000_000,
	MaxTags:     32,
	MaxTagKey:   64,
	MaxTagValue: 256,
	MaxID:       128,
	MaxString:   256,
}

// MaxLatency bounds latency_ms: a call longer than a day is a unit error in the sender.
const MaxLatency = 24 * 60 * 60 * 1000

// FieldError says which field of an event is wrong and why.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Normalize fills the defaults of the contract: a missing time becomes the receive time,
// a missing service tier "standard", a missing status "ok", and a unit counted zero times
// is dropped (Units is nil when none is left). Time is truncated to the
// millisecond (the precision carried between stages) and set to UTC.
func (u *Usage) Normalize(received time.Time) {
	if u.Time.IsZero() {
		u.Time = received
	}
	u.Time = u.Time.UTC().Truncate(time.Millisecond)
	if u.ServiceTier == "" {
		u.ServiceTier = TierStandard
	}
	if u.Status == "" {
		u.Status = StatusOK
	}
	// A unit counted zero times is no charge: dropped, so that no stage stores it and no
	// price is looked up for it.
	for k, v := range u.Units {
		if v == 0 {
			delete(u.Units, k)
		}
	}
	if len(u.Units) == 0 {
		u.Units = nil
	}
}

// Validate checks a normalized event against the v1 rules and returns the first violation as
// a *FieldError. now is the receiver's clock. The rules, in the order they are checked:
//
//   - id, provider and model are required, valid UTF-8 without control characters, and no
//     longer than MaxID (id) or MaxString bytes;
//   - time lies within [now-MaxAge, now+MaxFuture];
//   - every token count is within [0, MaxTokens];
//   - cached_input_tokens + cache_write_tokens ≤ input_tokens, cache_write_1h_tokens ≤
//     cache_write_tokens, reasoning_tokens ≤ output_tokens (the parts are inside the wholes);
//   - units has at most MaxUnitKeys keys, each a unit key (see Units) of at most MaxUnitKey
//     bytes with a count within [0, MaxUnitCount], or [0, MaxTokens] for the audio classes;
//     audio_input_tokens ≤ input_tokens − cached_input_tokens − cache_write_tokens and
//     audio_output_tokens ≤ output_tokens − reasoning_tokens;
//   - service_tier is standard, batch, flex or priority;
//   - latency_ms is within [0, MaxLatency];
//   - operation, status, response_id, workflow_id and prompt_version are at most MaxString bytes;
//   - estimate_reason is empty or one of EstimateReasons, and set only when estimated is;
//   - no string (id, names, tag values) contains a character that cannot be seen or that
//     changes how the text around it is displayed (Invisible);
//   - at most MaxTags tags; keys are 1..MaxTagKey bytes of [a-z0-9_.-]; values at most
//     MaxTagValue bytes; the traffic tag, when present, is user or background.
func (u *Usage) Validate(now time.Time, lim Limits) error {
	if err := checkString("id", u.ID, lim.MaxID, true); err != nil {
		return err
	}
	if err := checkString("provider", u.Provider, lim.MaxString, true); err != nil {
		return err
	}
	if err := checkString("model", u.Model, lim.MaxString, true); err != nil {
		return err
	}
	if u.Time.After(now.Add(lim.MaxFuture)) {
		return fieldErr("time", "%s is more than %s ahead of the receiver's clock (%s)",
			u.Time.Format(time.RFC3339Nano), lim.MaxFuture, now.UTC().Format(time.RFC3339))
	}
	if u.Time.Before(now.Add(-lim.MaxAge)) {
		return fieldErr("time", "%s is more than %s in the past", u.Time.Format(time.RFC3339Nano), lim.MaxAge)
	}
	if err := u.Usage.validate(lim.MaxTokens); err != nil {
		return err
	}
	if err := u.Units.validate(&u.Usage, lim.MaxTokens); err != nil {
		return err
	}
	switch u.ServiceTier {
	case TierStandard, TierBatch, TierFlex, TierPriority:
	default:
		return fieldErr("service_tier", "%q is not one of standard, batch, flex, priority", clip(u.ServiceTier))
	}
	if u.LatencyMS < 0 || u.LatencyMS > MaxLatency {
		return fieldErr("latency_ms", "%d is outside [0, %d]", u.LatencyMS, MaxLatency)
	}
	if u.EstimateReason != "" {
		if !slices.Contains(EstimateReasons, u.EstimateReason) {
			return fieldErr("estimate_reason", "%q is not one of %s", clip(u.EstimateReason), strings.Join(EstimateReasons, ", "))
		}
		if !u.Estimated {
			return fieldErr("estimate_reason", "%q is set but estimated is false", u.EstimateReason)
		}
	}
	for _, f := range [...]struct{ name, v string }{
		{"operation", u.Operation}, {"status", u.Status}, {"response_id", u.ResponseID},
		{"workflow_id", u.WorkflowID}, {"prompt_version", u.PromptVersion},
	} {
		if err := checkString(f.name, f.v, lim.MaxString, false); err != nil {
			return err
		}
	}
	return validateTags(u.Tags, lim)
}

func (t *Tokens) validate(max int64) error {
	for _, c := range [...]struct {
		name string
		v    int64
	}{
		{"usage.input_tokens", t.Input}, {"usage.output_tokens", t.Output},
		{"usage.cached_input_tokens", t.CachedInput}, {"usage.cache_write_tokens", t.CacheWrite},
		{"usage.cache_write_1h_tokens", t.CacheWrite1h}, {"usage.reasoning_tokens", t.Reasoning},
	} {
		if c.v < 0 {
			return fieldErr(c.name, "%d is negative", c.v)
		}
		if c.v > max {
			return fieldErr(c.name, "%d exceeds the limit of %d tokens per call", c.v, max)
		}
	}
	// Written as a difference: with MaxTokens near math.MaxInt64 the sum could overflow.
	if t.CachedInput > t.Input-t.CacheWrite {
		return fieldErr("usage", "cached_input_tokens (%d) + cache_write_tokens (%d) exceed input_tokens (%d), which includes them",
			t.CachedInput, t.CacheWrite, t.Input)
	}
	if t.CacheWrite1h > t.CacheWrite {
		return fieldErr("usage", "cache_write_1h_tokens (%d) exceed cache_write_tokens (%d), which includes them",
			t.CacheWrite1h, t.CacheWrite)
	}
	if t.Reasoning > t.Output {
		return fieldErr("usage", "reasoning_tokens (%d) exceed output_tokens (%d), which includes them",
			t.Reasoning, t.Output)
	}
	return nil
}

func validateTags(tags map[string]string, lim Limits) error {
	if len(tags) > lim.MaxTags {
		return fieldErr("tags", "%d tags exceed the limit of %d", len(tags), lim.MaxTags)
	}
	for k, v := range tags {
		if len(k) == 0 || len(k) > lim.MaxTagKey {
			return fieldErr("tags", "key %q must be 1 to %d bytes", clip(k), lim.MaxTagKey)
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
				return fieldErr("tags", "key %q may only contain a-z, 0-9, '_', '.' and '-'", clip(k))
			}
		}
		if err := checkString("", v, lim.MaxTagValue, false); err != nil {
			err.Field = "tags." + k // named only on failure: the name costs an allocation
			return err
		}
	}
	if t, ok := tags[TagTraffic]; ok && t != "user" && t != "background" {
		return fieldErr("tags.traffic", "%q is not one of user, background", clip(t))
	}
	return nil
}

func checkString(field, v string, max int, required bool) *FieldError {
	switch {
	case v == "" && required:
		return fieldErr(field, "is required")
	case len(v) > max:
		return fieldErr(field, "is %d bytes long, more than the limit of %d", len(v), max)
	}
	// Nearly every value is ASCII: check it byte by byte, and decode runes only past the
	// first non-ASCII byte.
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= utf8.RuneSelf {
			rest := v[i:]
			if !utf8.ValidString(rest) {
				return fieldErr(field, "is not valid UTF-8")
			}
			for _, r := range rest {
				if class := Invisible(r); class != "" {
					return fieldErr(field, "contains %s (U+%04X)", class, r)
				}
			}
			return nil
		}
		if c < 0x20 || c == 0x7f {
			return fieldErr(field, "contains a control character")
		}
	}
	return nil
}

// Invisible says why r may not appear in an id, a name or a tag value — the class of
// character it belongs to — or "" when it may. Refused are the characters that cannot be
// seen or that change how the text around them is displayed, with which two values that
// look the same are different values ("team" and "te\u200bam" are two teams in every
// report) and a value can be made to look like another (a right-to-left override): control
// characters (C0 and C1), bidirectional controls, zero-width characters, the byte-order
// mark, line and paragraph separators, and the other default-ignorable code points of
// Unicode (DerivedCoreProperties.txt: soft hyphen, variation selectors, Hangul fillers, tag
// characters, …).
func Invisible(r rune) string {
	switch {
	case r < 0x20 || r == 0x7f:
		return "a control character"
	case r >= 0x80 && r <= 0x9f:
		return "a C1 control character"
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return "a bidirectional control character"
	case r >= 0x200b && r <= 0x200d, r == 0x2060:
		return "a zero-width character"
	case r == 0xfeff:
		return "a byte-order mark"
	case r == 0x2028, r == 0x2029:
		return "a line or paragraph separator"
	case r == 0x00ad, r == 0x034f, r == 0x115f, r == 0x1160, r == 0x17b4, r == 0x17b5,
		r >= 0x180b && r <= 0x180f, r >= 0x2061 && r <= 0x206f, r == 0x3164,
		r >= 0xfe00 && r <= 0xfe0f, r == 0xffa0, r >= 0xfff0 && r <= 0xfff8,
		r >= 0x1bca0 && r <= 0x1bca3, r >= 0x1d173 && r <= 0x1d17a, r >= 0xe0000 && r <= 0xe0fff:
		return "an invisible (default-ignorable) character"
	}
	return ""
}

// clip keeps error messages short when the offending value is long or hostile.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	// Cut on a rune boundary so that the message stays valid UTF-8.
	n := 64
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
