package event

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func manyUnits(n int) Units {
	u := make(Units, n)
	for i := range n {
		u[fmt.Sprintf("image_outputs:v%02d", i)] = 1
	}
	return u
}

// TestValidateUnits checks every rule of the units object, with the exact messages.
func TestValidateUnits(t *testing.T) {
	// validUsage has input 1200 (1000 cached) and output 300 (100 reasoning): 200 uncached
	// input and 200 non-reasoning output tokens may be audio.
	const unknown = `key %q is not a unit (want web_search_calls, image_outputs, requests, audio_input_tokens, audio_output_tokens, the first three optionally with ":<variant>" of [a-z0-9._-])`
	for _, tc := range []struct {
		name  string
		units Units
		want  string // "" means the event is valid
	}{
		{"none", nil, ""},
		{"empty", Units{}, ""},
		{"every class", Units{"web_search_calls": 2, "image_outputs": 1, "requests": 1,
			"audio_input_tokens": 200, "audio_output_tokens": 200}, ""},
		{"variants", Units{"image_outputs:1024x1024:high": 2, "web_search_calls:high": 1, "requests:sonar-pro.v2_x": 1}, ""},
		{"exactly MaxUnitKeys", manyUnits(16), ""},
		{"more than MaxUnitKeys", manyUnits(17), "units: 17 keys exceed the limit of 16"},
		{"unknown key", Units{"web_searches": 1}, "units: " + fmt.Sprintf(unknown, "web_searches")},
		{"class in upper case", Units{"Web_Search_Calls": 1}, "units: " + fmt.Sprintf(unknown, "Web_Search_Calls")},
		{"empty key", Units{"": 1}, "units: " + fmt.Sprintf(unknown, "")},
		{"empty variant", Units{"image_outputs:": 1}, "units: " + fmt.Sprintf(unknown, "image_outputs:")},
		{"empty variant part", Units{"image_outputs:1024x1024::high": 1}, "units: " + fmt.Sprintf(unknown, "image_outputs:1024x1024::high")},
		{"variant ends in a colon", Units{"requests:high:": 1}, "units: " + fmt.Sprintf(unknown, "requests:high:")},
		{"variant upper case", Units{"image_outputs:HD": 1}, "units: " + fmt.Sprintf(unknown, "image_outputs:HD")},
		{"variant with a space", Units{"requests:very high": 1}, "units: " + fmt.Sprintf(unknown, "requests:very high")},
		{"audio with a variant", Units{"audio_input_tokens:cached": 1}, "units: " + fmt.Sprintf(unknown, "audio_input_tokens:cached")},
		{"key exactly MaxUnitKey", Units{"requests:" + strings.Repeat("a", 55): 1}, ""},
		{"key longer than MaxUnitKey", Units{"requests:" + strings.Repeat("a", 56): 1},
			`units: key "requests:` + strings.Repeat("a", 55) + `…" is 65 bytes long, more than the limit of 64`},
		{"negative count", Units{"web_search_calls": -1}, "units.web_search_calls: -1 is negative"},
		{"negative audio", Units{"audio_output_tokens": -3}, "units.audio_output_tokens: -3 is negative"},
		{"count exactly MaxUnitCount", Units{"image_outputs:512x512": 10_000}, ""},
		{"count over MaxUnitCount", Units{"image_outputs:512x512": 10_001}, "units.image_outputs:512x512: 10001 exceeds the limit of 10000 per call"},
		{"audio over MaxTokens", Units{"audio_input_tokens": 100_000_001},
			"units.audio_input_tokens: 100000001 exceeds the limit of 100000000 tokens per call"},
		{"audio input exactly uncached input", Units{"audio_input_tokens": 200}, ""},
		{"audio input over uncached input", Units{"audio_input_tokens": 201},
			"units: audio_input_tokens (201) exceed input_tokens (1200) less cached_input_tokens (1000) and cache_write_tokens (0), which include them"},
		{"audio output exactly non-reasoning output", Units{"audio_output_tokens": 200}, ""},
		{"audio output over non-reasoning output", Units{"audio_output_tokens": 201},
			"units: audio_output_tokens (201) exceed output_tokens (300) less reasoning_tokens (100), which include them"},
		// Keys are checked in byte order, so of two bad keys the same one is always named.
		{"two bad keys", Units{"zzz": 1, "aaa": 1}, "units: " + fmt.Sprintf(unknown, "aaa")},
		{"bad count before bad key", Units{"requests": -1, "web": 1}, "units.requests: -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := validUsage()
			u.Units = tc.units
			checkValidate(t, u.Validate(now, DefaultLimits), tc.want)
		})
	}
}

// TestValidateUnitsAfterTokens checks that the token counts are validated before the units
// that are parts of them, so that the message names the real problem.
func TestValidateUnitsAfterTokens(t *testing.T) {
	u := validUsage()
	u.Usage.Input = -1
	u.Units = Units{"bogus": 1}
	if err := u.Validate(now, DefaultLimits); err == nil || err.Error() != "usage.input_tokens: -1 is negative" {
		t.Fatalf("Validate() = %v, want usage.input_tokens: -1 is negative", err)
	}
}

func TestNormalizeUnits(t *testing.T) {
	f := func(in, want Units) {
		t.Helper()
		u := Usage{Units: in}
		u.Normalize(now)
		if !reflect.DeepEqual(u.Units, want) {
			t.Errorf("Normalize(%v).Units = %#v, want %#v", in, u.Units, want)
		}
	}
	f(nil, nil)
	f(Units{}, nil)
	f(Units{"requests": 0}, nil)
	f(Units{"requests": 0, "web_search_calls": 2}, Units{"web_search_calls": 2})
}

func TestUnitClass(t *testing.T) {
	f := func(key, class, variant string, ok bool) {
		t.Helper()
		c, v, gotOK := UnitClass(key)
		if c != class || v != variant || gotOK != ok {
			t.Errorf("UnitClass(%q) = %q, %q, %v, want %q, %q, %v", key, c, v, gotOK, class, variant, ok)
		}
	}
	f("web_search_calls", "web_search_calls", "", true)
	f("image_outputs:1024x1536:medium", "image_outputs", "1024x1536:medium", true)
	f("requests:low", "requests", "low", true)
	f("audio_output_tokens", "audio_output_tokens", "", true)
	f("audio_output_tokens:x", "", "", false)
	f("images", "", "", false)
	f(":high", "", "", false)
}

func TestDecodeUnits(t *testing.T) {
	body := `{"id":"u1","provider":"openai","model":"gpt-4o-audio-preview","usage":{"input_tokens":100,"output_tokens":50},` +
		`"units":{"audio_input_tokens":80,"audio_output_tokens":40,"web_search_calls":1,"requests":0}}` + "\n" +
		`{"id":"u2","provider":"openai","model":"m","usage":{"input_tokens":1,"output_tokens":1},"units":{"web_search_calls":1.5}}` + "\n" +
		`{"id":"u3","provider":"openai","model":"m","usage":{"input_tokens":1,"output_tokens":1},"units":{"image_outputs:HD":1}}` + "\n" +
		`{"id":"u4","provider":"openai","model":"m","usage":{"input_tokens":1,"output_tokens":1},"units":[1]}`
	b, err := Decode([]byte(body), ContentNDJSON, now, DefaultLimits, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != 1 {
		t.Fatalf("%d events accepted, want 1 (rejected: %+v)", len(b.Events), b.Rejected)
	}
	want := Units{"audio_input_tokens": 80, "audio_output_tokens": 40, "web_search_calls": 1}
	if !reflect.DeepEqual(b.Events[0].Units, want) {
		t.Errorf("Units = %#v, want %#v", b.Events[0].Units, want)
	}
	if got := ids(b.Events); got[0] != "u1" {
		t.Errorf("accepted %v, want u1", got)
	}
	wantRejected := []struct {
		index  int
		id     string
		prefix string
	}{
		{1, "u2", "not a usage event: "},
		{2, "u3", `units: key "image_outputs:HD" is not a unit`},
		{3, "u4", "not a usage event: "},
	}
	if len(b.Rejected) != len(wantRejected) {
		t.Fatalf("rejected %+v, want %d", b.Rejected, len(wantRejected))
	}
	for i, w := range wantRejected {
		r := b.Rejected[i]
		if r.Index != w.index || r.ID != w.id || !strings.HasPrefix(r.Error, w.prefix) {
			t.Errorf("rejection %d = %+v, want index %d, id %s, error starting %q", i, r, w.index, w.id, w.prefix)
		}
	}
}
