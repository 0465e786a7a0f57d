package normalize

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

func testNow() time.Time { return time.Date(2026, 11, 26, 22, 41, 31, 0, time.UTC) }

func addFixtureSeeds(f *testing.F, stream bool) {
	for _, fx := range fixtures {
		if fx.stream == stream {
			b, err := readFixtureErr(fx.file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(fx.format), b, uint16(7))
		}
	}
}

// FuzzResponse checks Response on arbitrary bodies: it never panics, and what it returns on
// success has no negative count and, for the formats whose input this package sums, parts
// within their wholes.
func FuzzResponse(f *testing.F) {
	addFixtureSeeds(f, false)
	f.Add(uint8(Anthropic), []byte(`{"usage":{"input_tokens":9223372036854775807,"cache_read_input_tokens":1}}`), uint16(0))
	f.Add(uint8(Gemini), []byte(`[{"usageMetadata":{"promptTokenCount":-1}},null,7]`), uint16(0))
	f.Fuzz(func(t *testing.T, format uint8, body []byte, _ uint16) {
		fm := Format(format % 6)
		u, err := Response(fm, body)
		if err != nil {
			if !reflect.DeepEqual(u, event.Usage{}) {
				t.Fatalf("error %v with a non-empty event %+v", err, u)
			}
			return
		}
		checkTokens(t, fm, u.Usage)
	})
}

// FuzzStream checks Stream on arbitrary bodies: it never panics, and the result does not
// depend on how the body is cut into writes.
func FuzzStream(f *testing.F) {
	addFixtureSeeds(f, true)
	f.Add(uint8(Anthropic), []byte("data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\r\n\r\n"), uint16(1))
	f.Add(uint8(BedrockConverse), esEvent("metadata", `{"usage":{"inputTokens":1}}`)[:20], uint16(3))
	f.Fuzz(func(t *testing.T, format uint8, body []byte, split uint16) {
		fm := Format(format % 6)
		whole, errWhole := streamUsage(fm, body, 0)
		pieces, errPieces := streamUsage(fm, body, int(split%97)+1)
		if (errWhole == nil) != (errPieces == nil) || errors.Is(errWhole, ErrNoUsage) != errors.Is(errPieces, ErrNoUsage) {
			t.Fatalf("whole: %v; in pieces of %d: %v", errWhole, split%97+1, errPieces)
		}
		if !reflect.DeepEqual(whole, pieces) {
			t.Fatalf("whole: %+v; in pieces of %d: %+v", whole, split%97+1, pieces)
		}
		if errWhole == nil {
			checkTokens(t, fm, whole.Usage)
		}
	})
}

func checkTokens(t *testing.T, f Format, tk event.Tokens) {
	t.Helper()
	if tk.Input < 0 || tk.Output < 0 || tk.CachedInput < 0 || tk.CacheWrite < 0 || tk.CacheWrite1h < 0 || tk.Reasoning < 0 {
		t.Fatalf("%s: negative count in %+v", f, tk)
	}
	switch f {
	case Anthropic, BedrockConverse:
		if tk.CachedInput > tk.Input-tk.CacheWrite || tk.CacheWrite1h > tk.CacheWrite {
			t.Fatalf("%s: parts outside their wholes in %+v", f, tk)
		}
	case Gemini:
		if tk.Reasoning > tk.Output {
			t.Fatalf("%s: reasoning outside output in %+v", f, tk)
		}
	}
}
