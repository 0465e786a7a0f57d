package spool

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
)

// BenchmarkAppend measures spooling: every Append is written and fsynced.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{100 << 10} {
		for _, perAppend := range []int{1, 16} {
			b.Run(fmt.Sprintf("MsgSz=%db/PerAppend=%d", size, perAppend), func(b *testing.B) {
				data := bytes.Repeat([]byte{7}, size)
				ms := make([]rawbatch.Message, perAppend)
				for i := range ms {
					ms[i] = rawbatch.Message{Subject: "usage.raw.0", Data: data, ID: rawbatch.MsgID(data), Events: 1000}
				}
				s, err := Open(b.TempDir(), Options{MaxBytes: 1 << 40})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				b.SetBytes(int64(size * perAppend))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Append(ms); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecodeSegment measures reading a full 8 MiB segment back.
func BenchmarkDecodeSegment(b *testing.B) {
	data := bytes.Repeat([]byte{7}, 100<<10)
	m := rawbatch.Message{Subject: "usage.raw.0", Data: data, ID: rawbatch.MsgID(data), Events: 1000}
	var seg []byte
	for len(seg) < DefaultSegmentBytes {
		seg = AppendRecord(seg, &m)
	}
	b.SetBytes(int64(len(seg)))
	b.ReportAllocs()
	for b.Loop() {
		if ms, d := DecodeSegment(seg); d.Regions != 0 || len(ms) == 0 {
			b.Fatalf("%d messages, damage %+v", len(ms), d)
		}
	}
}
