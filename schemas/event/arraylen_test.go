package event

import (
	stdjson "encoding/json"
	"fmt"
	"strings"
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

func TestCheckShape(t *testing.T) {
	f := func(body, want string) {
		t.Helper()
		got := ""
		if err := checkShape([]byte(body)); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("checkShape(%.40s…) = %q, want %q", body, got, want)
		}
	}
	f(`{"id":"a","tags":{"team":"x","a,b":"[[[["},"usage":{"input_tokens":1}}`, "")
	f(strings.Repeat("[", 32)+strings.Repeat("]", 32), "")
	f(strings.Repeat("[", 33), "nested more than 32 deep")
	f(`{"tags":{"k":"`+strings.Repeat(",", 5000)+`"}}`, "")
	f(`{"tags":{`+strings.Repeat(`"k":"",`, 1023)+`"z":""}}`, "")
	f(`{"tags":{`+strings.Repeat(`"k":"",`, 1024)+`"z":""}}`, "holds an object or array of more than 1024 members")
}

// checkShapeByteByByte is checkShape as first written, one byte at a time: the reference the
// faster scan must agree with.
func checkShapeByteByByte(data []byte) error {
	var commas [maxNesting + 1]int
	depth, inString := 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			if depth == maxNesting {
				return fmt.Errorf("nested more than %d deep", maxNesting)
			}
			depth++
			commas[depth] = 0
		case ']', '}':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth > 0 {
				if commas[depth]++; commas[depth] >= maxWidth {
					return fmt.Errorf("holds an object or array of more than %d members", maxWidth)
				}
			}
		}
	}
	return nil
}

func FuzzCheckShape(f *testing.F) {
	for _, s := range []string{`{"a":"b\"c\\","d":[1,2]}`, `"\\\\\"`, `[[[["x\\\\"]]]]`, `{"k":"` + strings.Repeat(`\\`, 7) + `"}`, strings.Repeat("[", 40)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := checkShape(data), checkShapeByteByByte(data)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("checkShape(%q) = %v, the byte-by-byte scan says %v", data, got, want)
		}
	})
}
