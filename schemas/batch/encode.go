package batch

import (
	"encoding/binary"
	"fmt"
	"sync"

	flatbuffers "github.com/google/flatbuffers/go"
)

// The encoder writes a payload's IPC stream straight from the rows, column after column,
// into the caller's buffer: the schema message (the bytes an Arrow writer wrote once,
// schemaVersions), one record batch message, the end-of-stream marker. The bytes are those
// Arrow's ipc.Writer writes for the same rows (TestEncodeAsArrowWrites pins them): buffers in
// depth-first column order, each padded to 8 bytes, no validity bitmaps (no column has
// nulls). Building an Arrow record first and letting the writer copy it cost a third of the
// collector's and the enricher's time per event, and every buffer twice in memory.

// Encode serializes rows as an Arrow IPC stream holding one record batch.
func Encode(rows []Row) ([]byte, error) { return AppendEncoded(nil, rows) }

// AppendEncoded is Encode appending the stream to dst, so that a caller can encode many
// batches into one buffer and use it again (the collector does, once JetStream has stored
// them).
func AppendEncoded(dst []byte, rows []Row) ([]byte, error) {
	vs, err := schemaVersions()
	if err != nil {
		return dst, err
	}
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	schema := vs[len(vs)-1].message
	// The record batch's metadata comes before its body and says where the body's buffers
	// lie, so the body is written first, after room for metadata of the size the batch's
	// will have (metaSize), and the metadata written into that room last.
	room := 8 + metaSize(len(rows) > 0)
	dst = growTo(dst, len(dst)+len(schema)+room+bodySize(rows)+len(endOfStream))
	dst = append(dst, schema...)
	head := len(dst)
	dst = dst[:head+room]
	e.reset(dst, head+room)
	e.columns(rows)
	dst = e.out
	meta := e.metadata(len(rows), len(dst)-head-room)
	if 8+len(meta) > room {
		return dst[:head], fmt.Errorf("encode arrow batch: record batch metadata of %d bytes, %d expected", len(meta), room-8)
	}
	binary.LittleEndian.PutUint32(dst[head:], continuation)
	binary.LittleEndian.PutUint32(dst[head+4:], uint32(room-8))
	n := copy(dst[head+8:], meta)
	clear(dst[head+8+n : head+room]) // the metadata's padding
	return append(dst, endOfStream[:]...), nil
}

// endOfStream ends an IPC stream: a continuation marker and a zero metadata length.
var endOfStream = [8]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}

func pad8(n int) int { return (n + 7) &^ 7 }

// bodySize is at least the size of the body of rows' record batch: per row, 8 bytes of each
// of the 11 int64 columns, an offset of 4 of each of the 18 string and 5 list columns, 2 of
// the partition and a byte of the 3 flags; the strings, and the tags and units with their
// offsets; and per batch, for each of the 107 buffers, 4 bytes of its last offset and 7 of
// padding.
func bodySize(rows []Row) int {
	const perRow, perBatch = 11*8 + (18+5)*4 + 2 + 1, 107 * (4 + 7)
	n := perBatch + perRow*len(rows)
	for i := range rows {
		r := &rows[i]
		n += len(r.ID) + len(r.Provider) + len(r.Model) + len(r.Operation) + len(r.ServiceTier) +
			len(r.ResponseID) + len(r.Status) + len(r.Team) + len(r.Feature) + len(r.Env) +
			len(r.CostCenter) + len(r.Traffic) + len(r.WorkflowID) + len(r.PromptVersion) +
			len(r.ModelPriced) + len(r.PriceVersion) + len(r.Source) + len(r.EstimateReason)
		for _, t := range r.ExtraTags {
			n += 2*4 + len(t.Key) + len(t.Value)
		}
		for _, u := range r.Units {
			n += 4 + len(u.Key) + 2*8
		}
	}
	return n
}

var encoders = sync.Pool{New: func() any { return &encoder{fb: flatbuffers.NewBuilder(4 << 10)} }}

// encoder writes the columns of one record batch after out[:start], noting the field node of
// every column and child, and the offset and length of every buffer, for the metadata.
type encoder struct {
	out     []byte
	start   int // of the body
	nodes   []int64
	buffers [][2]int64
	fb      *flatbuffers.Builder
}

func (e *encoder) reset(out []byte, start int) {
	e.out, e.start = out, start
	e.nodes, e.buffers = e.nodes[:0], e.buffers[:0]
}

// buffer notes a buffer starting at out[from:], ending at len(out), and pads it.
func (e *encoder) buffer(from int) {
	e.buffers = append(e.buffers, [2]int64{int64(from - e.start), int64(len(e.out) - from)})
	for (len(e.out)-e.start)%8 != 0 {
		e.out = append(e.out, 0)
	}
}

// node starts a column (or the values of a list column) of n values: its field node and its
// validity buffer, absent.
func (e *encoder) node(n int) {
	e.nodes = append(e.nodes, int64(n))
	e.buffers = append(e.buffers, [2]int64{int64(len(e.out) - e.start), 0})
}

// offsets reserves the n+1 little-endian int32 offsets of a string or list column, the
// first 0, for put to fill, and returns where they are.
func (e *encoder) offsets(n int) int {
	at := len(e.out)
	e.out = append(e.out, make([]byte, pad8(4*(n+1)))...)
	e.buffers = append(e.buffers, [2]int64{int64(at - e.start), int64(4 * (n + 1))})
	return at
}

// put writes value v at index i of the offsets at out[at:].
func put(out []byte, at, i, v int) { binary.LittleEndian.PutUint32(out[at+4*i:], uint32(v)) }

// The loops over rows append to a local slice and store it in e.out once: e is on the heap,
// and storing its slice at every row cost a write barrier per value while the garbage
// collector marks (0.15 µs an event in a 12,000,000-line benchmark run).

func (e *encoder) strings(rows []Row, get func(*Row) string) {
	e.node(len(rows))
	at := e.offsets(len(rows))
	out := e.out
	from := len(out)
	for i := range rows {
		out = append(out, get(&rows[i])...)
		put(out, at, i+1, len(out)-from)
	}
	e.out = out
	e.buffer(from)
}

func (e *encoder) int64s(rows []Row, get func(*Row) int64) {
	e.node(len(rows))
	out := e.out
	from := len(out)
	for i := range rows {
		out = binary.LittleEndian.AppendUint64(out, uint64(get(&rows[i])))
	}
	e.out = out
	e.buffer(from)
}

func (e *encoder) bools(rows []Row, get func(*Row) bool) {
	e.node(len(rows))
	from := len(e.out)
	e.out = append(e.out, make([]byte, (len(rows)+7)/8)...)
	for i := range rows {
		if get(&rows[i]) {
			e.out[from+i/8] |= 1 << (i % 8)
		}
	}
	e.buffer(from)
}

// lists writes the list offsets of a list column whose row r holds count(r) values, and the
// node of its values, and returns the number of values.
func (e *encoder) lists(rows []Row, count func(*Row) int) int {
	e.node(len(rows))
	at := e.offsets(len(rows))
	k := 0
	for i := range rows {
		k += count(&rows[i])
		put(e.out, at, i+1, k)
	}
	e.node(k)
	return k
}

// stringLists writes a list column of strings: row r's list is item(r, j) for j below count(r).
func (e *encoder) stringLists(rows []Row, count func(*Row) int, item func(*Row, int) string) {
	at := e.offsets(e.lists(rows, count))
	out := e.out
	from := len(out)
	k := 0
	for i := range rows {
		r := &rows[i]
		for j := range count(r) {
			out = append(out, item(r, j)...)
			k++
			put(out, at, k, len(out)-from)
		}
	}
	e.out = out
	e.buffer(from)
}

func tagCount(r *Row) int  { return len(r.ExtraTags) }
func unitCount(r *Row) int { return len(r.Units) }

func (e *encoder) unitInts(rows []Row, get func(*Unit) int64) {
	e.lists(rows, unitCount)
	out := e.out
	from := len(out)
	for i := range rows {
		for j := range rows[i].Units {
			out = binary.LittleEndian.AppendUint64(out, uint64(get(&rows[i].Units[j])))
		}
	}
	e.out = out
	e.buffer(from)
}

// columns writes every column of Schema, in order.
func (e *encoder) columns(rows []Row) {
	e.strings(rows, func(r *Row) string { return r.ID })
	e.int64s(rows, func(r *Row) int64 { return r.Time.UnixMilli() })
	e.int64s(rows, func(r *Row) int64 { return r.Received.UnixMilli() })
	e.node(len(rows))
	out := e.out
	from := len(out)
	for i := range rows {
		out = binary.LittleEndian.AppendUint16(out, uint16(rows[i].Partition))
	}
	e.out = out
	e.buffer(from)
	e.strings(rows, func(r *Row) string { return r.Provider })
	e.strings(rows, func(r *Row) string { return r.Model })
	e.strings(rows, func(r *Row) string { return r.Operation })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.Input })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.Output })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.CachedInput })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.CacheWrite })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.CacheWrite1h })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.Reasoning })
	e.strings(rows, func(r *Row) string { return r.ServiceTier })
	e.strings(rows, func(r *Row) string { return r.ResponseID })
	e.strings(rows, func(r *Row) string { return r.Status })
	e.int64s(rows, func(r *Row) int64 { return r.LatencyMS })
	e.strings(rows, func(r *Row) string { return r.Team })
	e.strings(rows, func(r *Row) string { return r.Feature })
	e.strings(rows, func(r *Row) string { return r.Env })
	e.strings(rows, func(r *Row) string { return r.CostCenter })
	e.strings(rows, func(r *Row) string { return r.Traffic })
	e.stringLists(rows, tagCount, func(r *Row, j int) string { return r.ExtraTags[j].Key })
	e.stringLists(rows, tagCount, func(r *Row, j int) string { return r.ExtraTags[j].Value })
	e.strings(rows, func(r *Row) string { return r.WorkflowID })
	e.strings(rows, func(r *Row) string { return r.PromptVersion })
	e.bools(rows, func(r *Row) bool { return r.CacheHit })
	e.bools(rows, func(r *Row) bool { return r.Priced })
	e.strings(rows, func(r *Row) string { return r.ModelPriced })
	e.strings(rows, func(r *Row) string { return r.PriceVersion })
	e.int64s(rows, func(r *Row) int64 { return r.CostPico })
	e.int64s(rows, func(r *Row) int64 { return r.SavingsPico })
	e.strings(rows, func(r *Row) string { return r.Source })
	e.stringLists(rows, unitCount, func(r *Row, j int) string { return r.Units[j].Key })
	e.unitInts(rows, func(u *Unit) int64 { return u.Count })
	e.unitInts(rows, func(u *Unit) int64 { return u.CostPico })
	e.bools(rows, func(r *Row) bool { return r.Estimated })
	e.strings(rows, func(r *Row) string { return r.EstimateReason })
}

// Arrow's Message.fbs, as its Go writer builds it: a Message table (version, header type,
// header, body length) whose header is a RecordBatch table (length, nodes, buffers).
const (
	metadataV5        = 4
	messageFields     = 5
	recordBatchFields = 5
)

// metadata returns the flatbuffer of the record batch's message, of rows rows and a body
// of size bytes, built as Arrow's writer builds it, so that the bytes are the same.
func (e *encoder) metadata(rows, size int) []byte {
	b := e.fb
	b.Reset()
	b.StartVector(16, len(e.nodes), 8)
	for i := len(e.nodes) - 1; i >= 0; i-- {
		b.Prep(8, 16)
		b.PrependInt64(0) // null count
		b.PrependInt64(e.nodes[i])
	}
	nodes := b.EndVector(len(e.nodes))
	b.StartVector(16, len(e.buffers), 8)
	for i := len(e.buffers) - 1; i >= 0; i-- {
		b.Prep(8, 16)
		b.PrependInt64(e.buffers[i][1])
		b.PrependInt64(e.buffers[i][0])
	}
	buffers := b.EndVector(len(e.buffers))
	b.StartObject(recordBatchFields)
	b.PrependInt64Slot(0, int64(rows), 0)
	b.PrependUOffsetTSlot(1, nodes, 0)
	b.PrependUOffsetTSlot(2, buffers, 0)
	batch := b.EndObject()
	b.StartObject(messageFields)
	b.PrependInt16Slot(0, metadataV5, 0)
	b.PrependByteSlot(1, headerRecordBatch, 0)
	b.PrependUOffsetTSlot(2, batch, 0)
	b.PrependInt64Slot(3, int64(size), 0)
	b.Finish(b.EndObject())
	return b.FinishedBytes()
}

// metaSize is the size of a record batch's metadata with its padding: the same for every
// batch with rows (and for every batch without), since only the values of its fields change.
func metaSize(rows bool) int {
	sizes := metaSizes()
	if rows {
		return sizes[1]
	}
	return sizes[0]
}

var metaSizes = sync.OnceValue(func() [2]int {
	var sizes [2]int
	for rows := range sizes {
		e := &encoder{fb: flatbuffers.NewBuilder(0)}
		e.reset(nil, 0)
		e.columns(make([]Row, rows))
		sizes[rows] = pad8(8+len(e.metadata(rows, len(e.out)))) - 8
	}
	return sizes
})
