package batch

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/ipc"
)

// TestAppendEncoded checks that AppendEncoded writes what Encode writes, after what dst
// holds, and that the streams of one buffer decode to their rows.
func TestAppendEncoded(t *testing.T) {
	rows := benchRows(10)
	want, err := Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := AppendEncoded([]byte("prefix"), rows[:4])
	if err != nil {
		t.Fatal(err)
	}
	first := len(buf)
	if buf, err = AppendEncoded(buf, rows); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf, []byte("prefix")) {
		t.Fatalf("AppendEncoded overwrote dst: %q", buf[:len("prefix")])
	}
	if got := buf[first:]; !bytes.Equal(got, want) {
		t.Errorf("AppendEncoded wrote %d bytes unlike the %d of Encode", len(got), len(want))
	}
	got, err := Decode(buf[len("prefix"):first])
	if err != nil || !reflect.DeepEqual(got, rows[:4]) {
		t.Errorf("the first stream decodes to %+v, %v; want the first 4 rows %+v", got, err, rows[:4])
	}
}

// TestAppendEncodedReusesScratch encodes full rows, sparse ones, then full ones again: the
// buffers of one record are those of the one before (scratches), and nothing of the earlier
// rows (a true flag, a unit, a tag) may show through in the later ones.
func TestAppendEncodedReusesScratch(t *testing.T) {
	full := benchRows(300)
	sparse := make([]Row, 5)
	for i := range sparse {
		sparse[i] = Row{ID: fmt.Sprintf("s%d", i), Time: t0, Received: t0}
	}
	for i, rows := range [][]Row{full, sparse, full, sparse[:1]} {
		data, err := AppendEncoded(nil, rows)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil || !reflect.DeepEqual(got, rows) {
			t.Fatalf("encoding %d: decoded %d rows (%v), unlike the %d encoded", i, len(got), err, len(rows))
		}
	}
}

// TestAppendEncodedStreams checks that the streams one stream (one ipc.Writer) writes are
// byte for byte those of a writer of their own each, as Encode wrote them before (and as
// every stage decodes them), and so are AppendEncoded's.
func TestAppendEncodedStreams(t *testing.T) {
	sparse := []Row{{ID: "s", Time: t0, Received: t0}}
	var s stream
	for i, rows := range [][]Row{benchRows(300), sparse, testRows(), benchRows(1), sparse} {
		rec := Record(rows)
		var shared bytes.Buffer
		if err := s.write(&shared, rec); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		w := ipc.NewWriter(&want, ipc.WithSchema(Schema))
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		if !bytes.Equal(shared.Bytes(), want.Bytes()) {
			t.Errorf("stream %d: %d bytes unlike the %d of a writer of its own", i, shared.Len(), want.Len())
		}
		got, err := AppendEncoded(nil, rows)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("stream %d: AppendEncoded wrote %d bytes unlike the %d of a writer of its own", i, len(got), want.Len())
		}
	}
}
