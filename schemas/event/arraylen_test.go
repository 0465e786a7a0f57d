package event

import (
	stdjson "encoding/json"
	"testing"
)

func TestArrayLen(t *testing.T) {
	f := func(body string, want int) {
		t.Helper()
		if got := ArrayLen([]byte(body)); got != want {
			t.Errorf("ArrayLen(%s) = %d, want %d", body, got, want)
		}
	}
	f(`[]`, 0)
	f(` [ ] `, 0)
	f(`[0]`, 1)
	f(`[0,0,0]`, 3)
	f(`[{"a":[1,2,3],"b":{"c":","}},"x,y",[4,5]]`, 3)
	f(`["\"],[", "\\", 1]`, 3)
	f("[\n{},\n{}\n]", 2)
}

// FuzzArrayLen checks that ArrayLen counts the elements of every well-formed JSON array
// exactly, as decoding it does.
func FuzzArrayLen(f *testing.F) {
	for _, s := range []string{`[]`, `[0,1]`, `[{"a":[1,2]},"x,y",null]`, `["\"]"]`, `[[],[[]],{}]`, `{"a":1}`, `[1,]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n := ArrayLen(body)
		var raw []stdjson.RawMessage
		if stdjson.Unmarshal(body, &raw) != nil {
			return
		}
		if n != len(raw) {
			t.Fatalf("ArrayLen(%q) = %d, want %d", body, n, len(raw))
		}
	})
}
