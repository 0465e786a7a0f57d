package normalize

import (
	"fmt"
	"unicode/utf8"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// CheckTag applies the v1 tag rules of event.Validate (with event.DefaultLimits) to one tag.
// Intakes that build events from what a client says about itself (proxy headers, OTLP
// attributes) use it to drop one bad tag instead of losing the whole event to validation.
func CheckTag(key, value string) error {
	lim := event.DefaultLimits
	if len(key) == 0 || len(key) > lim.MaxTagKey {
		return fmt.Errorf("tag key %q must be 1 to %d bytes", clip(key), lim.MaxTagKey)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("tag key %q may only contain a-z, 0-9, '_', '.' and '-'", clip(key))
		}
	}
	if len(value) > lim.MaxTagValue || !CleanString(value) {
		return fmt.Errorf("tag %s: the value must be at most %d bytes of UTF-8 without control characters", key, lim.MaxTagValue)
	}
	if key == event.TagTraffic && value != "user" && value != "background" {
		return fmt.Errorf("tag traffic: %q is not one of user, background", clip(value))
	}
	return nil
}

// CleanString says whether s is valid UTF-8 without control characters, as every string of
// a v1 event must be.
func CleanString(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// OpenAIServiceTier sets u's service tier from the service_tier an OpenAI response reported
// (default, flex, priority, …), as Response does.
func OpenAIServiceTier(u *event.Usage, reported string) { setTier(u, reported, openAITiers) }
