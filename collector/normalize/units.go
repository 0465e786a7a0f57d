package normalize

import (
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// setUnit records n units of key on u (event.Units); 0 removes the key.
func setUnit(u *event.Usage, key string, n int64) {
	if n <= 0 {
		delete(u.Units, key)
		return
	}
	if u.Units == nil {
		u.Units = event.Units{}
	}
	u.Units[key] = n
}

// setAudio records the audio parts of u's token counts, which must be set already. A
// provider's audio count may include audio read from the prompt cache, which the v1 event
// counts as cached input: the audio input is cut to the uncached prompt (and the audio output
// to the output less reasoning), so that the event stays valid and no token is priced twice.
func setAudio(u *event.Usage, in, out int64) {
	t := &u.Usage
	setUnit(u, event.UnitAudioInputTokens, min(max(in, 0), t.Input-t.CachedInput-t.CacheWrite))
	setUnit(u, event.UnitAudioOutputTokens, min(max(out, 0), t.Output-t.Reasoning))
}

// imageKey is the unit key of one generated image, "image_outputs:<size>:<quality>", with
// each part lower-cased and dropped when it is empty or not a valid variant part (then the
// catalogue prices the image by the class price, or leaves the call unpriced).
func imageKey(size, quality string) string {
	key := event.UnitImageOutputs
	for _, part := range [...]string{size, quality} {
		part = strings.ToLower(part)
		if _, _, ok := event.UnitClass(event.UnitImageOutputs + ":" + part); ok && !strings.Contains(part, ":") {
			key += ":" + part
		}
	}
	if len(key) > event.MaxUnitKey {
		return event.UnitImageOutputs
	}
	return key
}
