package loadgen

import (
	"testing"

	json "github.com/goccy/go-json"
)

func BenchmarkNext(b *testing.B) {
	g := New(DefaultConfig(testNow))
	b.ReportAllocs()
	for b.Loop() {
		g.Next()
	}
}

func BenchmarkNDJSON(b *testing.B) {
	const batch = 1000
	g := New(DefaultConfig(testNow))
	items := make([]Item, batch)
	for i := range items {
		items[i] = g.Next()
	}
	b.SetBytes(int64(len(NDJSON(items))))
	b.ReportAllocs()
	for b.Loop() {
		NDJSON(items)
	}
}

// BenchmarkEncode justifies the hand-written encoder against the library it must match.
func BenchmarkEncode(b *testing.B) {
	g := New(DefaultConfig(testNow))
	u := g.Next().Event
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = appendEvent(buf[:0], &u)
		}
	})
	b.Run("goccy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&u); err != nil {
				b.Fatal(err)
			}
		}
	})
}
