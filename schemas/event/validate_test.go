package event

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// now is the receiver's clock in every test of this package.
var now = time.Date(2026, 11, 26, 22, 41, 31, 0, time.UTC)

// validUsage returns a normalized event that passes Validate at now with DefaultLimits.
func validUsage() Usage {
	return Usage{
		ID: "evt_1", Time: now.Add(-time.Minute), Provider: "openai", Model: "gpt-4o-2024-08-06",
		Operation:   "chat",
		Usage:       Tokens{Input: 1200, Output: 300, CachedInput: 1000, Reasoning: 100},
		ServiceTier: TierStandard, ResponseID: "chatcmpl-1", Status: StatusOK, LatencyMS: 850,
		Tags:       map[string]string{TagTeam: "search", TagTraffic: "user", "region": "eu-west-1"},
		WorkflowID: "ticket-4711", PromptVersion: "summarize@v7",
	}
}

func manyTags(n int) map[string]string {
	tags := make(map[string]string, n)
	for i := range n {
		tags[fmt.Sprintf("k%02d", i)] = "v"
	}
	return tags
}

func TestValidate(t *testing.T) {
	lim := DefaultLimits
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name   string
		mutate func(u *Usage)
		want   string // "" means the event is valid
	}{
		{"valid", func(u *Usage) {}, ""},

		// id, provider and model: required, UTF-8, no control characters, bounded.
		{"id missing", func(u *Usage) { u.ID = "" }, "id: is required"},
		{"id exactly MaxID", func(u *Usage) { u.ID = long(128) }, ""},
		{"id too long", func(u *Usage) { u.ID = long(129) }, "id: is 129 bytes long, more than the limit of 128"},
		{"id invalid UTF-8", func(u *Usage) { u.ID = "evt_\xff" }, "id: is not valid UTF-8"},
		{"id control character", func(u *Usage) { u.ID = "evt\n1" }, "id: contains a control character"},
		{"id DEL", func(u *Usage) { u.ID = "evt\x7f" }, "id: contains a control character"},
		{"id unicode", func(u *Usage) { u.ID = "évt_☃" }, ""},
		{"provider missing", func(u *Usage) { u.Provider = "" }, "provider: is required"},
		{"provider exactly MaxString", func(u *Usage) { u.Provider = long(256) }, ""},
		{"provider too long", func(u *Usage) { u.Provider = long(257) }, "provider: is 257 bytes long, more than the limit of 256"},
		{"provider control character", func(u *Usage) { u.Provider = "open\tai" }, "provider: contains a control character"},
		{"model missing", func(u *Usage) { u.Model = "" }, "model: is required"},
		{"model too long", func(u *Usage) { u.Model = long(257) }, "model: is 257 bytes long, more than the limit of 256"},
		{"model invalid UTF-8", func(u *Usage) { u.Model = "\xc3" }, "model: is not valid UTF-8"},

		// time within [now-MaxAge, now+MaxFuture].
		{"time exactly MaxFuture ahead", func(u *Usage) { u.Time = now.Add(5 * time.Minute) }, ""},
		{"time 1ms past MaxFuture", func(u *Usage) { u.Time = now.Add(5*time.Minute + time.Millisecond) },
			"time: 2026-11-26T22:46:31.001Z is more than 5m0s ahead of the receiver's clock (2026-11-26T22:41:31Z)"},
		{"time far future", func(u *Usage) { u.Time = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) },
			"time: 9999-12-31T23:59:59Z is more than 5m0s ahead of the receiver's clock (2026-11-26T22:41:31Z)"},
		{"time exactly MaxAge old", func(u *Usage) { u.Time = now.Add(-35 * 24 * time.Hour) }, ""},
		{"time 1ms older than MaxAge", func(u *Usage) { u.Time = now.Add(-35*24*time.Hour - time.Millisecond) },
			"time: 2026-10-22T22:41:30.999Z is more than 840h0m0s in the past"},

		// every token count within [0, MaxTokens].
		{"input exactly MaxTokens", func(u *Usage) { u.Usage = Tokens{Input: 100_000_000, Output: 100_000_000} }, ""},
		{"input negative", func(u *Usage) { u.Usage.Input = -1 }, "usage.input_tokens: -1 is negative"},
		{"input over MaxTokens", func(u *Usage) { u.Usage.Input = 100_000_001 },
			"usage.input_tokens: 100000001 exceeds the limit of 100000000 tokens per call"},
		{"output negative", func(u *Usage) { u.Usage.Output = -5 }, "usage.output_tokens: -5 is negative"},
		{"output over MaxTokens", func(u *Usage) { u.Usage.Output = 1 << 40 },
			"usage.output_tokens: 1099511627776 exceeds the limit of 100000000 tokens per call"},
		{"cached negative", func(u *Usage) { u.Usage.CachedInput = -1 }, "usage.cached_input_tokens: -1 is negative"},
		{"cache write negative", func(u *Usage) { u.Usage.CacheWrite = -1 }, "usage.cache_write_tokens: -1 is negative"},
		{"cache write 1h negative", func(u *Usage) { u.Usage.CacheWrite1h = -1 }, "usage.cache_write_1h_tokens: -1 is negative"},
		{"reasoning negative", func(u *Usage) { u.Usage.Reasoning = -1 }, "usage.reasoning_tokens: -1 is negative"},
		{"reasoning over MaxTokens", func(u *Usage) { u.Usage.Reasoning = 100_000_001 },
			"usage.reasoning_tokens: 100000001 exceeds the limit of 100000000 tokens per call"},

		// the parts are inside the wholes.
		{"cached + write exactly input", func(u *Usage) { u.Usage = Tokens{Input: 100, CachedInput: 60, CacheWrite: 40} }, ""},
		{"cached + write over input", func(u *Usage) { u.Usage = Tokens{Input: 100, CachedInput: 60, CacheWrite: 41} },
			"usage: cached_input_tokens (60) + cache_write_tokens (41) exceed input_tokens (100), which includes them"},
		{"write 1h exactly write", func(u *Usage) { u.Usage = Tokens{Input: 100, CacheWrite: 40, CacheWrite1h: 40} }, ""},
		{"write 1h over write", func(u *Usage) { u.Usage = Tokens{Input: 100, CacheWrite: 40, CacheWrite1h: 41} },
			"usage: cache_write_1h_tokens (41) exceed cache_write_tokens (40), which includes them"},
		{"reasoning exactly output", func(u *Usage) { u.Usage = Tokens{Output: 7, Reasoning: 7} }, ""},
		{"reasoning over output", func(u *Usage) { u.Usage = Tokens{Output: 7, Reasoning: 8} },
			"usage: reasoning_tokens (8) exceed output_tokens (7), which includes them"},

		// service tier.
		{"tier batch", func(u *Usage) { u.ServiceTier = TierBatch }, ""},
		{"tier flex", func(u *Usage) { u.ServiceTier = TierFlex }, ""},
		{"tier priority", func(u *Usage) { u.ServiceTier = TierPriority }, ""},
		{"tier unknown", func(u *Usage) { u.ServiceTier = "turbo" },
			`service_tier: "turbo" is not one of standard, batch, flex, priority`},
		{"tier empty (not normalized)", func(u *Usage) { u.ServiceTier = "" },
			`service_tier: "" is not one of standard, batch, flex, priority`},
		{"tier long is clipped", func(u *Usage) { u.ServiceTier = long(70) },
			`service_tier: "` + long(64) + `…" is not one of standard, batch, flex, priority`},
		{"tier long clipped on a rune boundary", func(u *Usage) { u.ServiceTier = long(63) + "é" },
			`service_tier: "` + long(63) + `…" is not one of standard, batch, flex, priority`},

		// latency.
		{"latency zero", func(u *Usage) { u.LatencyMS = 0 }, ""},
		{"latency exactly MaxLatency", func(u *Usage) { u.LatencyMS = MaxLatency }, ""},
		{"latency negative", func(u *Usage) { u.LatencyMS = -1 }, "latency_ms: -1 is outside [0, 86400000]"},
		{"latency over MaxLatency", func(u *Usage) { u.LatencyMS = MaxLatency + 1 }, "latency_ms: 86400001 is outside [0, 86400000]"},

		// estimated and estimate_reason: a reason is one of EstimateReasons, on an estimated event.
		{"estimated without a reason", func(u *Usage) { u.Estimated = true }, ""},
		{"estimated cut stream", func(u *Usage) { u.Estimated, u.EstimateReason = true, EstimateCutStream }, ""},
		{"estimate reason unknown", func(u *Usage) { u.Estimated, u.EstimateReason = true, "guess" }, `estimate_reason: "guess" is not one of cut_stream, client_gone, upstream_timeout, no_usage, upstream_error`},
		{"estimate reason on a measured event", func(u *Usage) { u.EstimateReason = EstimateNoUsage }, `estimate_reason: "no_usage" is set but estimated is false`},

		// optional strings.
		{"operation exactly MaxString", func(u *Usage) { u.Operation = long(256) }, ""},
		{"operation too long", func(u *Usage) { u.Operation = long(257) }, "operation: is 257 bytes long, more than the limit of 256"},
		{"status too long", func(u *Usage) { u.Status = long(300) }, "status: is 300 bytes long, more than the limit of 256"},
		{"response_id too long", func(u *Usage) { u.ResponseID = long(257) }, "response_id: is 257 bytes long, more than the limit of 256"},
		{"workflow_id control character", func(u *Usage) { u.WorkflowID = "a\x00b" }, "workflow_id: contains a control character"},
		{"prompt_version invalid UTF-8", func(u *Usage) { u.PromptVersion = "v\xfe" }, "prompt_version: is not valid UTF-8"},
		{"optional strings empty", func(u *Usage) {
			u.Operation, u.ResponseID, u.WorkflowID, u.PromptVersion = "", "", "", ""
		}, ""},

		// tags.
		{"no tags", func(u *Usage) { u.Tags = nil }, ""},
		{"exactly MaxTags", func(u *Usage) { u.Tags = manyTags(32) }, ""},
		{"too many tags", func(u *Usage) { u.Tags = manyTags(33) }, "tags: 33 tags exceed the limit of 32"},
		{"empty key", func(u *Usage) { u.Tags = map[string]string{"": "x"} }, `tags: key "" must be 1 to 64 bytes`},
		{"key exactly MaxTagKey", func(u *Usage) { u.Tags = map[string]string{long(64): "x"} }, ""},
		{"key too long", func(u *Usage) { u.Tags = map[string]string{long(65): "x"} },
			`tags: key "` + long(64) + `…" must be 1 to 64 bytes`},
		{"key upper case", func(u *Usage) { u.Tags = map[string]string{"Team": "x"} },
			`tags: key "Team" may only contain a-z, 0-9, '_', '.' and '-'`},
		{"key with space", func(u *Usage) { u.Tags = map[string]string{"a b": "x"} },
			`tags: key "a b" may only contain a-z, 0-9, '_', '.' and '-'`},
		{"key all allowed characters", func(u *Usage) { u.Tags = map[string]string{"a-z_0.9": "x"} }, ""},
		{"value exactly MaxTagValue", func(u *Usage) { u.Tags = map[string]string{"k": long(256)} }, ""},
		{"value empty", func(u *Usage) { u.Tags = map[string]string{"k": ""} }, ""},
		{"value too long", func(u *Usage) { u.Tags = map[string]string{"k": long(257)} },
			"tags.k: is 257 bytes long, more than the limit of 256"},
		{"value control character", func(u *Usage) { u.Tags = map[string]string{"k": "a\rb"} }, "tags.k: contains a control character"},
		// Characters that cannot be seen or that change how the text around them is shown.
		{"value C1 control", func(u *Usage) { u.Tags = map[string]string{"team": "search\u0085"} }, "tags.team: contains a C1 control character (U+0085)"},
		{"value right-to-left override", func(u *Usage) { u.Tags = map[string]string{"team": "\u202esearch"} }, "tags.team: contains a bidirectional control character (U+202E)"},
		{"value first strong isolate", func(u *Usage) { u.Tags = map[string]string{"team": "a\u2068b"} }, "tags.team: contains a bidirectional control character (U+2068)"},
		{"value left-to-right mark", func(u *Usage) { u.Tags = map[string]string{"team": "a\u200eb"} }, "tags.team: contains a bidirectional control character (U+200E)"},
		{"value Arabic letter mark", func(u *Usage) { u.Tags = map[string]string{"team": "a\u061cb"} }, "tags.team: contains a bidirectional control character (U+061C)"},
		{"value zero-width space", func(u *Usage) { u.Tags = map[string]string{"team": "sea\u200brch"} }, "tags.team: contains a zero-width character (U+200B)"},
		{"value zero-width joiner", func(u *Usage) { u.Tags = map[string]string{"team": "sea\u200drch"} }, "tags.team: contains a zero-width character (U+200D)"},
		{"value word joiner", func(u *Usage) { u.Tags = map[string]string{"team": "sea\u2060rch"} }, "tags.team: contains a zero-width character (U+2060)"},
		{"value byte-order mark", func(u *Usage) { u.Tags = map[string]string{"team": "\ufeffsearch"} }, "tags.team: contains a byte-order mark (U+FEFF)"},
		{"value line separator", func(u *Usage) { u.Tags = map[string]string{"team": "a\u2028b"} }, "tags.team: contains a line or paragraph separator (U+2028)"},
		{"value soft hyphen", func(u *Usage) { u.Tags = map[string]string{"team": "sea\u00adrch"} }, "tags.team: contains an invisible (default-ignorable) character (U+00AD)"},
		{"value variation selector", func(u *Usage) { u.Tags = map[string]string{"team": "a\ufe0fb"} }, "tags.team: contains an invisible (default-ignorable) character (U+FE0F)"},
		{"value Hangul filler", func(u *Usage) { u.Tags = map[string]string{"team": "\u3164"} }, "tags.team: contains an invisible (default-ignorable) character (U+3164)"},
		{"value tag character", func(u *Usage) { u.Tags = map[string]string{"team": "a\U000e0041b"} }, "tags.team: contains an invisible (default-ignorable) character (U+E0041)"},
		{"id zero-width", func(u *Usage) { u.ID = "evt-\u200b1" }, "id: contains a zero-width character (U+200B)"},
		{"model bidi override", func(u *Usage) { u.Model = "gpt-4o\u202d" }, "model: contains a bidirectional control character (U+202D)"},
		{"response_id C1", func(u *Usage) { u.ResponseID = "resp\u009b1" }, "response_id: contains a C1 control character (U+009B)"},
		{"value visible non-ASCII", func(u *Usage) { u.Tags = map[string]string{"team": "équipe-北京 ✓"} }, ""},
		{"traffic background", func(u *Usage) { u.Tags = map[string]string{TagTraffic: "background"} }, ""},
		{"traffic unknown", func(u *Usage) { u.Tags = map[string]string{TagTraffic: "robot"} },
			`tags.traffic: "robot" is not one of user, background`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := validUsage()
			tc.mutate(&u)
			checkValidate(t, u.Validate(now, lim), tc.want)
		})
	}
}

// checkValidate fails t unless err is what Validate should return: nil when want is "",
// else a *FieldError whose message is want.
func checkValidate(t testing.TB, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("Validate() = %q, want nil", err)
	case want != "" && err == nil:
		t.Fatalf("Validate() = nil, want %q", want)
	case want != "" && err.Error() != want:
		t.Fatalf("Validate() = %q\nwant          %q", err, want)
	}
	if err != nil {
		if _, ok := err.(*FieldError); !ok {
			t.Fatalf("Validate() returned %T, want *FieldError", err)
		}
	}
}

// TestValidateOrder checks that the first violation in the documented order is reported.
func TestValidateOrder(t *testing.T) {
	u := validUsage()
	u.Model = ""
	u.Usage.Input = -1
	u.ServiceTier = "turbo"
	if err := u.Validate(now, DefaultLimits); err == nil || err.Error() != "model: is required" {
		t.Fatalf("Validate() = %v, want model: is required", err)
	}
}

// TestValidateHugeLimits checks the parts-inside-the-whole rule cannot be fooled by an
// overflowing sum when a deployment raises MaxTokens to the maximum.
func TestValidateHugeLimits(t *testing.T) {
	lim := DefaultLimits
	lim.MaxTokens = 1<<63 - 1
	u := validUsage()
	u.Usage = Tokens{Input: 10, CachedInput: 1<<63 - 1, CacheWrite: 1<<63 - 1}
	want := "usage: cached_input_tokens (9223372036854775807) + cache_write_tokens (9223372036854775807) exceed input_tokens (10), which includes them"
	if err := u.Validate(now, lim); err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v\nwant %s", err, want)
	}
}

func TestNormalize(t *testing.T) {
	received := time.Date(2026, 11, 26, 22, 41, 31, 123_456_789, time.UTC)
	t.Run("defaults", func(t *testing.T) {
		var u Usage
		u.Normalize(received)
		want := time.Date(2026, 11, 26, 22, 41, 31, 123_000_000, time.UTC)
		if !u.Time.Equal(want) || u.Time.Location() != time.UTC {
			t.Errorf("Time = %v, want %v in UTC", u.Time, want)
		}
		if u.ServiceTier != TierStandard {
			t.Errorf("ServiceTier = %q, want %q", u.ServiceTier, TierStandard)
		}
		if u.Status != StatusOK {
			t.Errorf("Status = %q, want %q", u.Status, StatusOK)
		}
	})
	t.Run("keeps given values, truncates to ms in UTC", func(t *testing.T) {
		tz := time.FixedZone("CET", 3600)
		u := Usage{Time: time.Date(2026, 11, 26, 23, 0, 0, 999_999, tz), ServiceTier: TierFlex, Status: "rate_limited"}
		u.Normalize(received)
		want := time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC)
		if u.Time != want {
			t.Errorf("Time = %v, want %v", u.Time, want)
		}
		if u.ServiceTier != TierFlex || u.Status != "rate_limited" {
			t.Errorf("ServiceTier, Status = %q, %q, want flex, rate_limited", u.ServiceTier, u.Status)
		}
	})
}
