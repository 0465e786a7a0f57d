package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
)

func msg(i int) rawbatch.Message {
	// Every record has the same size: 100 bytes of data, a 7-byte id, under 128 events.
	return rawbatch.Message{
		Subject: fmt.Sprintf("usage.raw.%d", i%4),
		Data:    bytes.Repeat([]byte{byte(i)}, 100),
		ID:      fmt.Sprintf("id-%04d", i),
		Events:  i + 1,
	}
}

func msgs(from, to int) []rawbatch.Message {
	var out []rawbatch.Message
	for i := from; i < to; i++ {
		out = append(out, msg(i))
	}
	return out
}

func equalMsgs(tb testing.TB, got, want []rawbatch.Message) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			tb.Fatalf("message %d = %s/%s/%d events/%d bytes, want %s/%s/%d events/%d bytes", i,
				got[i].Subject, got[i].ID, got[i].Events, len(got[i].Data),
				want[i].Subject, want[i].ID, want[i].Events, len(want[i].Data))
		}
	}
}

func open(tb testing.TB, dir string, opts Options) *Spool {
	tb.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func appendAll(tb testing.TB, s *Spool, ms []rawbatch.Message) {
	tb.Helper()
	if n, err := s.Append(ms); n != len(ms) || err != nil {
		tb.Fatalf("Append(%d messages) = %d, %v", len(ms), n, err)
	}
}

// frame wraps a payload in a record header with a correct checksum.
func frame(payload []byte) []byte {
	b := append([]byte(nil), magic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

func TestRecordRoundTrip(t *testing.T) {
	m := rawbatch.Message{Subject: "usage.raw.2", ID: "abc", Data: []byte("arrow"), Events: 300}
	rec := AppendRecord([]byte("prefix"), &m)[len("prefix"):]
	// 300 is the two-byte uvarint ac 02.
	wantPayload := []byte("\xac\x02\x0busage.raw.2\x03abcarrow")
	if want := frame(wantPayload); !bytes.Equal(rec, want) {
		t.Fatalf("record = %q, want %q", rec, want)
	}
	if got := recordSize(&m); got != len(rec) {
		t.Errorf("recordSize = %d, want %d", got, len(rec))
	}
	got, n, err := DecodeRecord(append(rec, "next record"...))
	if err != nil || n != len(rec) || !reflect.DeepEqual(got, m) {
		t.Errorf("DecodeRecord = %+v, %d, %v; want %+v, %d, nil", got, n, err, m, len(rec))
	}
}

func TestDecodeRecordMalformed(t *testing.T) {
	good := AppendRecord(nil, &rawbatch.Message{Subject: "s", ID: "i", Data: []byte("d"), Events: 1})
	badCRC := append([]byte(nil), good...)
	badCRC[len(badCRC)-1] ^= 1
	huge := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(huge[4:], maxPayload+1)
	long := binary.AppendUvarint([]byte{1}, maxSubject+1)
	long = append(long, strings.Repeat("s", maxSubject+1)...)
	long = append(long, 1, 'i', 'd')
	for _, tc := range []struct {
		name string
		in   []byte
		want error
		text string
	}{
		{"empty", nil, ErrTruncated, "spool record is truncated: 0 bytes, less than a record header"},
		{"torn header", good[:7], ErrTruncated, "spool record is truncated: 7 bytes, less than a record header"},
		{"torn payload", good[:len(good)-1], ErrTruncated, "spool record is truncated: 17 of 18 bytes"},
		{"short garbage", []byte("xy"), ErrCorrupt, "spool record is corrupt: no record magic"},
		{"no magic", append([]byte("TMS2"), good[4:]...), ErrCorrupt, "spool record is corrupt: no record magic"},
		{"bad checksum", badCRC, ErrCorrupt, "spool record is corrupt: checksum"},
		{"absurd length", huge, ErrCorrupt, fmt.Sprintf("spool record is corrupt: payload length %d exceeds %d", maxPayload+1, maxPayload)},
		{"bad varint", frame([]byte{0x80, 0x80}), ErrCorrupt, "spool record is corrupt: bad varint"},
		{"zero events", frame([]byte("\x00\x01s\x01id")), ErrCorrupt, "spool record is corrupt: message of 0 events: must hold 1 to 16777216"},
		{"too many events", frame(binary.AppendUvarint(nil, maxEvents+1)), ErrCorrupt, "bad varint"},
		{"subject too long", frame(long), ErrCorrupt, "spool record is corrupt: field length 1025 exceeds 1024"},
		{"empty subject", frame([]byte("\x01\x00\x01id")), ErrCorrupt, "spool record is corrupt: message subject of 0 bytes: must be 1 to 1024"},
		{"empty id", frame([]byte("\x01\x01s\x00d")), ErrCorrupt, "spool record is corrupt: message id of 0 bytes: must be 1 to 256"},
		{"no data", frame([]byte("\x01\x01s\x01i")), ErrCorrupt, "spool record is corrupt: message data of 0 bytes: must be 1 to 67108864"},
		{"id past the end", frame([]byte("\x01\x01s\x09i")), ErrCorrupt, "spool record is corrupt: field length 9 exceeds 256 or the 1 bytes left"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, n, err := DecodeRecord(tc.in)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("DecodeRecord = %v, want %v containing %q", err, tc.want, tc.text)
			}
			if n != 0 || !reflect.DeepEqual(m, rawbatch.Message{}) {
				t.Errorf("DecodeRecord returned %+v, %d with an error", m, n)
			}
		})
	}
}

func TestDecodeRecordEventsBound(t *testing.T) {
	payload := binary.AppendUvarint(nil, maxEvents+1)
	payload = append(payload, "\x01s\x01id"...)
	_, _, err := DecodeRecord(frame(payload))
	if want := "spool record is corrupt: 16777217 events"; err == nil || err.Error() != want {
		t.Errorf("DecodeRecord = %v, want %s", err, want)
	}
}

func TestDecodeSegmentSkipsDamage(t *testing.T) {
	ms := msgs(0, 3)
	var recs [][]byte
	var seg []byte
	for i := range ms {
		r := AppendRecord(nil, &ms[i])
		recs = append(recs, r)
		seg = append(seg, r...)
	}
	tests := []struct {
		name string
		in   []byte
		want []rawbatch.Message
		dmg  Damage
	}{
		{"whole", seg, ms, Damage{}},
		{"empty", nil, nil, Damage{}},
		{"torn last record", seg[:len(seg)-5], ms[:2], Damage{Regions: 1, Bytes: len(recs[2]) - 5}},
		{"torn last header", seg[:len(recs[0])+len(recs[1])+6], ms[:2], Damage{Regions: 1, Bytes: 6}},
		{"corrupt middle record", func() []byte {
			b := append([]byte(nil), seg...)
			b[len(recs[0])+headerSize+20] ^= 0xff
			return b
		}(), []rawbatch.Message{ms[0], ms[2]}, Damage{Regions: 1, Bytes: len(recs[1])}},
		{"garbage before", append([]byte("garbage"), seg...), ms, Damage{Regions: 1, Bytes: 7}},
		{"zeros after", append(append([]byte(nil), seg...), make([]byte, 4096)...), ms, Damage{Regions: 1, Bytes: 4096}},
		{"garbage only", []byte("not a spool segment"), nil, Damage{Regions: 1, Bytes: 19}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, dmg := DecodeSegment(tc.in)
			equalMsgs(t, got, tc.want)
			if dmg != tc.dmg {
				t.Errorf("damage = %+v, want %+v", dmg, tc.dmg)
			}
		})
	}
}

func TestSpoolAppendReplayOldestFirst(t *testing.T) {
	dir := t.TempDir()
	ms := msgs(0, 10)
	one := int64(recordSize(&ms[0]))
	s := open(t, dir, Options{SegmentBytes: 3 * one})
	appendAll(t, s, ms[:4])
	appendAll(t, s, ms[4:10])
	var wantBytes int64
	wantEvents := 0
	for i := range ms {
		wantBytes += int64(recordSize(&ms[i]))
		wantEvents += ms[i].Events
	}
	// Segments of 3 messages: 3, 3, 3, 1.
	if got, want := s.Stats(), (Stats{Segments: 4, Messages: 10, Events: wantEvents, Bytes: wantBytes}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	var got []rawbatch.Message
	for {
		seg, ok, err := s.Oldest()
		if err != nil {
			t.Fatalf("Oldest: %v", err)
		}
		if !ok {
			break
		}
		if seg.Damage != (Damage{}) {
			t.Errorf("segment %d damage %+v", seg.Seq, seg.Damage)
		}
		got = append(got, seg.Messages...)
		if err := s.Remove(seg.Seq); err != nil {
			t.Fatalf("Remove(%d): %v", seg.Seq, err)
		}
	}
	equalMsgs(t, got, ms)
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("Stats after replay = %+v, want empty", st)
	}
	if names := segmentFiles(t, dir); len(names) != 0 {
		t.Errorf("segment files left after replay: %v", names)
	}
	if err := s.Remove(1); err == nil || err.Error() != "remove spool segment 1: not in the spool" {
		t.Errorf("Remove of a removed segment = %v", err)
	}
}

func segmentFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		tb.Fatal(err)
	}
	for i := range matches {
		matches[i] = filepath.Base(matches[i])
	}
	return matches
}

func TestSpoolOldestSealsTheActiveSegment(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	appendAll(t, s, msgs(0, 2))
	seg, ok, err := s.Oldest()
	if err != nil || !ok || seg.Seq != 1 {
		t.Fatalf("Oldest = seq %d, %v, %v; want segment 1", seg.Seq, ok, err)
	}
	equalMsgs(t, seg.Messages, msgs(0, 2))
	// Appended while segment 1 is being replayed: must not land in it.
	appendAll(t, s, msgs(2, 3))
	if err := s.Remove(1); err != nil {
		t.Fatal(err)
	}
	seg, ok, err = s.Oldest()
	if err != nil || !ok || seg.Seq != 2 {
		t.Fatalf("Oldest = seq %d, %v, %v; want segment 2", seg.Seq, ok, err)
	}
	equalMsgs(t, seg.Messages, msgs(2, 3))
}

func TestSpoolReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, msgs(0, 3))
	want := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Files that are not segments are left alone.
	for _, name := range []string{"notes.txt", "1.seg", "00000000000000000000.seg"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir, Options{})
	if got := s.Stats(); got != want {
		t.Fatalf("Stats after reopen = %+v, want %+v", got, want)
	}
	appendAll(t, s, msgs(3, 4))
	if got, want := segmentFiles(t, dir), []string{"00000000000000000000.seg", "00000000000000000001.seg", "00000000000000000002.seg", "1.seg"}; !reflect.DeepEqual(got, want) {
		t.Errorf("segment files = %v, want %v (a new segment after reopening)", got, want)
	}
	var got []rawbatch.Message
	for seg, ok, err := s.Oldest(); ok; seg, ok, err = s.Oldest() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, seg.Messages...)
		if err := s.Remove(seg.Seq); err != nil {
			t.Fatal(err)
		}
	}
	equalMsgs(t, got, msgs(0, 4))
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("a foreign file was touched: %v", err)
	}
}

func TestSpoolTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, msgs(0, 3))
	s.Close()
	path := filepath.Join(dir, segmentName(1))
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of writing the third record.
	if err := os.Truncate(path, info.Size()-10); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	m := msgs(0, 3)
	if got, want := s.Stats(), (Stats{Segments: 1, Messages: 2, Events: 3, Bytes: info.Size() - 10}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	seg, ok, err := s.Oldest()
	if err != nil || !ok {
		t.Fatalf("Oldest = %v, %v", ok, err)
	}
	equalMsgs(t, seg.Messages, m[:2])
	if want := (Damage{Regions: 1, Bytes: recordSize(&m[2]) - 10}); seg.Damage != want {
		t.Errorf("damage = %+v, want %+v", seg.Damage, want)
	}
}

func TestSpoolFull(t *testing.T) {
	ms := msgs(0, 3)
	limit := int64(recordSize(&ms[0]) + recordSize(&ms[1]))
	s := open(t, t.TempDir(), Options{MaxBytes: limit})
	n, err := s.Append(ms)
	if n != 2 || !errors.Is(err, ErrFull) {
		t.Fatalf("Append = %d, %v; want 2, ErrFull", n, err)
	}
	if n, err := s.Append(ms[2:]); n != 0 || !errors.Is(err, ErrFull) {
		t.Fatalf("Append when full = %d, %v; want 0, ErrFull", n, err)
	}
	if n, err := s.AppendPastLimit(ms[2:]); n != 1 || err != nil {
		t.Fatalf("AppendPastLimit = %d, %v; want 1, nil", n, err)
	}
	if got := s.Stats(); got.Messages != 3 || got.Bytes != limit+int64(recordSize(&ms[2])) {
		t.Errorf("Stats = %+v, want 3 messages", got)
	}
}

func TestSpoolRefusesInvalidMessages(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	bad := msg(1)
	bad.ID = ""
	n, err := s.Append([]rawbatch.Message{msg(0), bad, msg(2)})
	if want := "spool message : message id of 0 bytes: must be 1 to 256"; n != 1 || err == nil || err.Error() != want {
		t.Errorf("Append = %d, %v; want 1, %s", n, err, want)
	}
}

func TestSpoolLock(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "is another emitter using it?") {
		t.Errorf("second Open = %v, want a lock error", err)
	}
	s.Close()
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestOptionsValidate(t *testing.T) {
	err := Options{MaxBytes: -1, SegmentBytes: -2}.Validate()
	want := "spool max bytes (-1) must be positive\nspool segment bytes (-2) must be positive"
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
	if _, err := Open("", Options{}); err == nil || err.Error() != "open spool: the directory is empty" {
		t.Errorf("Open(\"\") = %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	m := msg(3)
	good := AppendRecord(nil, &m)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(frame([]byte("\x01\x01s\x01id")))
	f.Add([]byte("TMS1\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is neither ErrTruncated nor ErrCorrupt", err)
			}
			return
		}
		if re := AppendRecord(nil, &m); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded record %q differs from the decoded %q", re, b[:n])
		}
	})
}

func FuzzDecodeSegment(f *testing.F) {
	var seg []byte
	for _, m := range msgs(0, 3) {
		seg = AppendRecord(seg, &m)
	}
	f.Add(seg)
	f.Add(seg[:len(seg)-7])
	f.Add(append([]byte("TMS1TMS1"), seg...))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, d := DecodeSegment(b)
		size := d.Bytes
		for i := range ms {
			size += recordSize(&ms[i])
		}
		if size != len(b) {
			t.Fatalf("%d bytes decoded and damaged, want every one of the %d", size, len(b))
		}
		if (d.Regions == 0) != (d.Bytes == 0) {
			t.Fatalf("damage %+v", d)
		}
	})
}
