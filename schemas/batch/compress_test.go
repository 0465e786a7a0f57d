package batch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestCompressedRoundTrip(t *testing.T) {
	for _, rows := range [][]Row{nil, testRows()[:1], testRows()} {
		t.Run(fmt.Sprintf("%d rows", len(rows)), func(t *testing.T) {
			plain, err := Encode(rows)
			if err != nil {
				t.Fatal(err)
			}
			// Appended after what buf held, which stays as it was.
			data, err := AppendCompressed([]byte("head"), rows)
			if err != nil {
				t.Fatalf("AppendCompressed() error = %v", err)
			}
			if !bytes.HasPrefix(data, []byte("head"+compressedPrefix)) || !Compressed(data[4:]) || Compressed(plain) {
				t.Fatalf("AppendCompressed() = %q…, want head, then a compressed payload", data[:min(len(data), 12)])
			}
			got, err := Decode(data[4:])
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if !reflect.DeepEqual(got, rows) {
				t.Fatalf("Decode(AppendCompressed(rows)) =\n%+v\nwant\n%+v", got, rows)
			}
			// Deterministic: the same rows give the same bytes, so a re-published message
			// keeps its Nats-Msg-Id.
			again, _ := AppendCompressed(nil, rows)
			if !bytes.Equal(again, data[4:]) {
				t.Fatal("AppendCompressed() of the same rows gave other bytes")
			}
		})
	}
}

// A batch of realistic rows — repeated models, teams, tiers — is a third of its size or less
// compressed.
func TestCompressedSize(t *testing.T) {
	rows := make([]Row, 0, 1000)
	for i := range 1000 {
		r := testRows()[1]
		r.ID = fmt.Sprintf("evt_%d", i)
		r.ResponseID = fmt.Sprintf("chatcmpl-%024d", i*7919)
		r.Tokens.Input = int64(i * 31 % 5000)
		rows = append(rows, r)
	}
	plain, _ := Encode(rows)
	data, _ := AppendCompressed(nil, rows)
	if 3*len(data) > len(plain) {
		t.Errorf("compressed %d bytes, plain %d: want a third or less", len(data), len(plain))
	}
}

func TestCompressedCorrupt(t *testing.T) {
	data, err := AppendCompressed(nil, testRows())
	if err != nil {
		t.Fatal(err)
	}
	huge := []byte(compressedPrefix)
	huge = binary.AppendUvarint(huge, 1<<40)
	for name, bad := range map[string][]byte{
		"prefix only":       []byte(compressedPrefix),
		"truncated":         data[:len(data)/2],
		"claims a terabyte": append(huge, 0, 0, 0),
		"one byte flipped": func() []byte {
			c := bytes.Clone(data)
			c[len(c)/2] ^= 0x55
			return c
		}(),
	} {
		rows, err := AppendDecoded([]Row{{ID: "kept"}}, bad)
		if err == nil || !strings.HasPrefix(err.Error(), "decode arrow batch: ") {
			// A flipped byte in a literal may decompress to a stream that still decodes.
			if name == "one byte flipped" && err == nil {
				continue
			}
			t.Errorf("%s: error = %v, want one saying what was being decoded", name, err)
		}
		if err != nil && (len(rows) != 1 || rows[0].ID != "kept") {
			t.Errorf("%s: %d rows on error, want dst as it was (1 row)", name, len(rows))
		}
	}
}

// BenchmarkCompressed is BenchmarkEncode and BenchmarkDecode with compression: what it adds
// to the writer and the readers of every message, per 1,000 rows.
func BenchmarkCompressed(b *testing.B) {
	rows := benchRows(1000)
	var buf []byte
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = AppendCompressed(buf[:0], rows); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf))/1000, "B/row")
	})
	data, _ := AppendCompressed(nil, rows)
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		dst := make([]Row, 0, 1000)
		for b.Loop() {
			got, err := AppendDecoded(dst[:0], data)
			if err != nil || len(got) != 1000 {
				b.Fatalf("AppendDecoded() = %d rows, %v", len(got), err)
			}
		}
	})
}
