package batch

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	flatbuffers "github.com/google/flatbuffers/go"
)

// A record another Arrow writer wrote from a slice of a larger one — of plain or of
// dictionary columns — decodes to the sliced rows: its offsets and indices may not start at
// zero, and its dictionaries may hold values no row uses.
func TestDecodeSlicedRecord(t *testing.T) {
	rows := testRows()
	if len(rows) < 3 {
		t.Fatalf("testRows() has %d rows, want at least 3", len(rows))
	}
	plain := arrowRecord(rows)
	defer plain.Release()
	dict := dictionaryRecord(plain)
	defer dict.Release()
	for _, rec := range []arrow.Record{plain, dict} {
		slice := rec.NewSlice(1, int64(len(rows)))
		defer slice.Release()
		got, err := Decode(writeIPC(t, slice))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rows[1:]) {
			t.Fatalf("Decode(slice of %v) =\n%+v\nwant\n%+v", rec.Schema().Field(colModel).Type, got, rows[1:])
		}
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
	for _, rows := range [][]Row{testRows(), dictionaryRows()} {
		corruptEveryMetadataByte(t, rows)
	}
}

// dictionaryRows are testRows repeated into a batch Encode dictionary-encodes.
func dictionaryRows() []Row {
	return slices.Repeat(testRows(), (dictionaryMinRows+len(testRows())-1)/len(testRows()))
}

func corruptEveryMetadataByte(t *testing.T, rows []Row) {
	data, err := Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := checkFraming(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs[1:] { // the dictionary batches' and the record batch's metadata
		start := bytes.Index(data, m.meta)
		for at := start; at < start+len(m.meta); at++ {
			for _, v := range []byte{0, 0x7f, 0xff} {
				corrupt := append([]byte(nil), data...)
				corrupt[at] = v
				if _, err := Decode(corrupt); err != nil && !strings.HasPrefix(err.Error(), "decode arrow batch: ") {
					t.Fatalf("byte %d = %#x: error %q does not say what was being done", at, v, err)
				}
			}
		}
	}
}

// A stream whose dictionaries do not hold its indices — an index past a dictionary's end, a
// dictionary missing, of an unknown id, a delta, or in a stream of a plain schema — is
// refused with an error saying what is wrong, never a panic.
func TestDecodeDictionaryErrors(t *testing.T) {
	rows := dictionaryRows()
	schema, dicts, batch := encodedMessages(t, Encode, rows)
	if len(dicts) != len(dictionaryColumns) {
		t.Fatalf("%d dictionary batches, want %d", len(dicts), len(dictionaryColumns))
	}
	_, oneRow, _ := encodedMessages(t, func(rows []Row) ([]byte, error) { return appendEncoded(nil, rows, true) },
		[]Row{{Provider: rows[0].Provider}})
	plainSchema, _, plainBatch := encodedMessages(t, func(rows []Row) ([]byte, error) { return writeIPC(t, arrowRecord(rows)), nil }, rows)
	with := func(ms ...message) []message { return append(append([]message{}, dicts...), ms...) }
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"index past the end", "column provider: row 1's index 1 in a dictionary of 1 values",
			frame(schema, append(append([]message{oneRow[0]}, dicts[1:]...), batch)...)},
		{"dictionary missing", "column provider: row 0's index 0 in a dictionary of 0 values",
			frame(schema, append(append([]message{}, dicts[1:]...), batch)...)},
		{"unknown id", "message 15: dictionary 99 of 14", frame(schema, with(dictionaryMessage(t, dicts[3], 99, false), batch)...)},
		{"negative id", "message 15: dictionary -1 of 14", frame(schema, with(dictionaryMessage(t, dicts[3], -1, false), batch)...)},
		{"delta", "message 15: a delta dictionary", frame(schema, with(dictionaryMessage(t, dicts[3], 3, true), batch)...)},
		{"dictionary in a plain stream", "message 1: a dictionary batch in a stream of a schema without dictionaries",
			frame(plainSchema, dicts[0], plainBatch)},
	}
	for _, c := range cases {
		_, err := Decode(c.data)
		if want := "decode arrow batch: " + c.want; err == nil || err.Error() != want {
			t.Errorf("%s: Decode() error = %v, want %s", c.name, err, want)
		}
	}
	// The helpers change only what each case says: the stream framed again, and a dictionary
	// rebuilt with its own id, decode to the rows.
	for _, data := range [][]byte{frame(schema, with(batch)...), frame(schema, with(dictionaryMessage(t, dicts[3], 3, false), batch)...)} {
		if got, err := Decode(data); err != nil || !reflect.DeepEqual(got, rows) {
			t.Fatalf("a stream framed again decodes to %d rows (%v), want the %d encoded", len(got), err, len(rows))
		}
	}
}

// encodedMessages splits the stream encode writes for rows into its schema message, as
// bytes, its dictionary batches and its record batch.
func encodedMessages(t *testing.T, encode func([]Row) ([]byte, error), rows []Row) ([]byte, []message, message) {
	data, err := encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _, err := checkFraming(data)
	if err != nil {
		t.Fatal(err)
	}
	return data[:len(msgs[0].meta)+8], msgs[1 : len(msgs)-1], msgs[len(msgs)-1]
}

// frame is a stream of the schema message and the messages given.
func frame(schema []byte, ms ...message) []byte {
	out := append([]byte(nil), schema...)
	for _, m := range ms {
		out = binary.LittleEndian.AppendUint32(out, continuation)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(m.meta)))
		out = append(append(out, m.meta...), m.body...)
	}
	return append(out, endOfStream[:]...)
}

// dictionaryMessage is the dictionary batch m with the id and delta flag given, its
// metadata built again field by field as Arrow's Message.fbs lays it out.
func dictionaryMessage(t *testing.T, m message, id int64, delta bool) message {
	_, h, err := header(m)
	if err != nil {
		t.Fatal(err)
	}
	data := flatbuffers.Table{Bytes: h.Bytes, Pos: h.Indirect(flatbuffers.UOffsetT(h.Offset(dictionaryData)) + h.Pos)}
	rec, err := readBatch(data, m.body)
	if err != nil {
		t.Fatal(err)
	}
	b := flatbuffers.NewBuilder(0)
	structs := func(raw []byte) flatbuffers.UOffsetT {
		n := len(raw) / structSize
		b.StartVector(structSize, n, 8)
		for i := n - 1; i >= 0; i-- {
			b.Prep(8, structSize)
			b.PrependInt64(int64(binary.LittleEndian.Uint64(raw[i*structSize+8:])))
			b.PrependInt64(int64(binary.LittleEndian.Uint64(raw[i*structSize:])))
		}
		return b.EndVector(n)
	}
	nodes, buffers := structs(rec.nodes), structs(rec.buffers)
	b.StartObject(recordBatchFields)
	b.PrependInt64Slot(0, int64(rec.n), 0)
	b.PrependUOffsetTSlot(1, nodes, 0)
	b.PrependUOffsetTSlot(2, buffers, 0)
	batch := b.EndObject()
	b.StartObject(dictionaryBatchFields)
	b.PrependInt64Slot(0, id, 0)
	b.PrependUOffsetTSlot(1, batch, 0)
	b.PrependBoolSlot(2, delta, false)
	dict := b.EndObject()
	b.StartObject(messageFields)
	b.PrependInt16Slot(0, metadataV5, 0)
	b.PrependByteSlot(1, headerDictionaryBatch, 0)
	b.PrependUOffsetTSlot(2, dict, 0)
	b.PrependInt64Slot(3, int64(len(m.body)), 0)
	b.Finish(b.EndObject())
	meta := b.FinishedBytes()
	return message{meta: append(meta, make([]byte, pad8(8+len(meta))-8-len(meta))...), body: m.body}
}
