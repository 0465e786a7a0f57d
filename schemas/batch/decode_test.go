package batch

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// A record another Arrow writer wrote from a slice of a larger one: its offsets may not start
// at zero, and it decodes to the sliced rows.
func TestDecodeSlicedRecord(t *testing.T) {
	rows := testRows()
	if len(rows) < 3 {
		t.Fatalf("testRows() has %d rows, want at least 3", len(rows))
	}
	rec := arrowRecord(rows)
	defer rec.Release()
	slice := rec.NewSlice(1, int64(len(rows)))
	defer slice.Release()
	got, err := Decode(writeIPC(t, slice))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows[1:]) {
		t.Fatalf("Decode(slice) =\n%+v\nwant\n%+v", got, rows[1:])
	}
}

// Rows share one array of tags and one of units, each capped to its own: appending to one
// row's tags never changes the next row's.
func TestDecodedTagsAreCapped(t *testing.T) {
	rows := []Row{fullRow(), fullRow()}
	rows[1].ID = "evt_2"
	data, err := Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0].ExtraTags) == 0 || len(got[0].Units) == 0 {
		t.Fatalf("fullRow() decodes without tags or units: %+v", got[0])
	}
	want := append([]Tag(nil), got[1].ExtraTags...)
	wantUnits := append([]Unit(nil), got[1].Units...)
	_ = append(got[0].ExtraTags, Tag{"x", "y"})
	_ = append(got[0].Units, Unit{Key: "x"})
	if !reflect.DeepEqual(got[1].ExtraTags, want) || !reflect.DeepEqual(got[1].Units, wantUnits) {
		t.Fatalf("appending to row 0 changed row 1: %+v, %+v", got[1].ExtraTags, got[1].Units)
	}
}

// Every length Decode reads is checked against the payload: corrupting any byte of a batch's
// metadata yields rows or an error naming the decoding, never a panic or a giant allocation.
func TestDecodeCorruptMetadata(t *testing.T) {
	data, err := Encode(testRows())
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := checkFraming(data)
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(data, msgs[1].meta) // the record batch's metadata
	for at := start; at < start+len(msgs[1].meta); at++ {
		for _, v := range []byte{0, 0x7f, 0xff} {
			corrupt := append([]byte(nil), data...)
			corrupt[at] = v
			if _, err := Decode(corrupt); err != nil && !strings.HasPrefix(err.Error(), "decode arrow batch: ") {
				t.Fatalf("byte %d = %#x: error %q does not say what was being done", at, v, err)
			}
		}
	}
}
