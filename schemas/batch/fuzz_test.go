package batch

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzBatchDecode feeds Decode arbitrary payloads, seeded with real batches and broken
// copies of them. Decode must never panic; when a payload decodes, encoding the rows again
// and decoding that must give the same rows (Encode's output round-trips exactly).
func FuzzBatchDecode(f *testing.F) {
	for _, rows := range [][]Row{nil, testRows()[:1], testRows(), dictionaryRows()} {
		data, err := Encode(rows)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(data[:len(data)-8])
		for _, at := range []int{0, 4, 8, 12, 100, len(data) / 2, len(data) - 20} {
			corrupt := append([]byte(nil), data...)
			corrupt[at] ^= 0xff
			f.Add(corrupt)
		}
	}
	for _, rows := range [][]Row{testRows()[:1], testRows()} {
		data, err := AppendCompressed(nil, rows)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
		corrupt := append([]byte(nil), data...)
		corrupt[len(compressedPrefix)+1] ^= 0xff // the decoded length
		f.Add(corrupt)
	}
	f.Add([]byte("hello, world"))
	f.Add([]byte(compressedPrefix + "hello, world"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := Decode(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "decode arrow batch: ") {
				t.Fatalf("Decode() error = %q, want it to say what was being done", err)
			}
			return
		}
		again, err := Encode(rows)
		if err != nil {
			t.Fatalf("Encode() of %d decoded rows: %v", len(rows), err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(rows)) error = %v", err)
		}
		if !reflect.DeepEqual(back, rows) {
			t.Fatalf("Decode(Encode(rows)) =\n%+v\nwant\n%+v", back, rows)
		}
	})
}

// FuzzPriceTier feeds PriceTier arbitrary price versions: it must never panic, and a tier it
// finds is a segment of the version that follows "@YYYY-MM-DD/" and holds no "/".
func FuzzPriceTier(f *testing.F) {
	for _, v := range []string{"openai/gpt-4o@2024-10-01/batch", "google/claude@20250929@2025-09-29/standard/long",
		"openai/o3@2025-06-10/flex/long/discount=12.5%@2026-01-01", "x@2025-01-01", "@0000-00-00/", "", "@"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tier := PriceTier(v)
		if strings.Contains(tier, "/") {
			t.Fatalf("PriceTier(%q) = %q holds a /", v, tier)
		}
		if tier != "" && !strings.Contains(v, "/"+tier) {
			t.Fatalf("PriceTier(%q) = %q is not a segment of it", v, tier)
		}
	})
}
