package batch

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	flatbuffers "github.com/google/flatbuffers/go"
)

// The encoder writes a payload's IPC stream straight from the rows, column after column,
// into the caller's buffer: the schema message (the bytes an Arrow writer wrote once,
// schemaVersions), a dictionary batch message for each of the dictionaryColumns (in a batch of
// dictionaryMinRows rows or more), one record batch message, the end-of-stream marker. The bytes are those
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
	return appendEncoded(dst, rows, len(rows) >= dictionaryMinRows)
}

// appendEncoded is AppendEncoded writing dictionaries or not.
func appendEncoded(dst []byte, rows []Row, dictionaries bool) ([]byte, error) {
	vs, err := schemaVersions()
	if err != nil {
		return dst, err
	}
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	defer e.forget()
	e.dictionaries = dictionaries
	schema := vs[plainVersion].message
	if e.dictionaries {
		e.collect(rows)
		schema = vs[len(vs)-1].message
	}
	// The record batch's metadata comes before its body and says where the body's buffers
	// lie, so the body is written first, after room for metadata of the size the batch's
	// will have (metaSize), and the metadata written into that room last.
	room := 8 + metaSize(len(rows), e.dictionaries)
	dst = growTo(dst, len(dst)+len(schema)+e.dictionariesSize()+room+bodySize(rows, e.dictionaries)+len(endOfStream))
	dst = append(dst, schema...)
	if e.dictionaries {
		for k := range e.dicts {
			dst = e.appendDictionary(dst, k)
		}
	}
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
// of the 11 int64 columns, an offset or index of 4 of each of the 18 string and 5 list
// columns, 2 of the partition and a byte of the 3 flags; the strings outside dictionaries,
// and the tags and units with their offsets; and per batch, for each of its buffers, 4 bytes
// of its last offset and 7 of padding.
func bodySize(rows []Row, dictionaries bool) int {
	const perRow = 11*8 + (18+5)*4 + 2 + 1
	n := plainBuffers*(4+7) + perRow*len(rows)
	if dictionaries {
		n = dictionaryBuffers*(4+7) + perRow*len(rows)
	}
	for i := range rows {
		r := &rows[i]
		n += len(r.ID) + len(r.ResponseID) + len(r.WorkflowID) + len(r.EstimateReason)
		if !dictionaries {
			n += len(r.Provider) + len(r.Model) + len(r.Operation) + len(r.ServiceTier) + len(r.Status) +
				len(r.Team) + len(r.Feature) + len(r.Env) + len(r.CostCenter) + len(r.Traffic) +
				len(r.PromptVersion) + len(r.ModelPriced) + len(r.PriceVersion) + len(r.Source)
		}
		for _, t := range r.ExtraTags {
			n += 2*4 + len(t.Key) + len(t.Value)
		}
		for _, u := range r.Units {
			n += 4 + len(u.Key) + 2*8
		}
	}
	return n
}

// The number of buffers of a record batch's body: a plain string column has three (validity,
// offsets, bytes), a dictionary column two (validity, indices).
const (
	plainBuffers      = 107
	dictionaryBuffers = plainBuffers - len(dictionaryColumns)
)

// dictionaryMinRows is the fewest rows a batch dictionary-encodes. A dictionary batch costs
// ~180 bytes of metadata before its values, so a batch of a few events, which light traffic
// sends, is smaller with every string column plain, as the releases before dictionaries
// wrote it; from about this many rows on, the dictionaries pay for themselves
// (TestDictionaryMinRows).
const dictionaryMinRows = 40

var encoders = sync.Pool{New: func() any { return &encoder{fb: flatbuffers.NewBuilder(4 << 10)} }}

// encoder writes the columns of one record batch after out[:start], noting the field node of
// every column and child, and the offset and length of every buffer, for the metadata.
type encoder struct {
	out     []byte
	start   int // of the body
	nodes   []int64
	buffers [][2]int64
	fb      *flatbuffers.Builder
	// dictionaries is whether the batch being encoded has dictionaries, dicts (by dictionary
	// id) then being those of its rows.
	dictionaries bool
	dicts        [len(dictionaryColumns)]dictionary
}

// dictionary is one dictionary column of a batch: its distinct values in the order they
// first occur (as Arrow's dictionary builder orders them), and each row's index into them.
type dictionary struct {
	values  []string
	size    int              // of the values, in bytes
	at      map[string]int32 // the values' indices, once they outgrow a linear scan
	indices []int32
	// seen remembers the index of a value by where its bytes lie. Rows decoded from one
	// message share each value's bytes (the enricher encodes such rows), and so do a body's
	// neighbouring events in the collector, so most values are found without hashing or
	// comparing their bytes. An entry holds for its generation's batch only, while its rows
	// keep the bytes where they are.
	seen [seenSlots]seenValue
	gen  uint32
}

const seenSlots = 64

type seenValue struct {
	data       uintptr
	len        int
	index, gen int32
}

// scanned is how many values a dictionary looks for a value among before it keeps a map: a
// batch's providers, environments or statuses are a few, and comparing a few strings costs
// less than hashing one.
const scanned = 8

func (d *dictionary) collect(rows []Row, get func(*Row) string) {
	d.values, d.size, d.indices = d.values[:0], 0, d.indices[:0]
	clear(d.at)
	if d.gen++; d.gen == 0 { // wrapped: entries of 2³² batches ago would look current
		d.seen = [seenSlots]seenValue{}
		d.gen = 1
	}
	gen := int32(d.gen)
	indices := d.indices
	for i := range rows {
		s := get(&rows[i])
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		e := &d.seen[(p>>3^p>>9)%seenSlots]
		if e.data != p || e.len != len(s) || e.gen != gen {
			*e = seenValue{data: p, len: len(s), index: d.index(s), gen: gen}
		}
		indices = append(indices, e.index)
	}
	d.indices = indices
}

// index returns s's index among the values, adding it if it is new.
func (d *dictionary) index(s string) int32 {
	if len(d.values) <= scanned {
		for i, v := range d.values {
			if v == s {
				return int32(i)
			}
		}
	} else if i, ok := d.at[s]; ok {
		return i
	}
	i := int32(len(d.values))
	d.values = append(d.values, s)
	d.size += len(s)
	switch {
	case len(d.values) == scanned+1:
		if d.at == nil {
			d.at = make(map[string]int32)
		}
		for j, v := range d.values {
			d.at[v] = int32(j)
		}
	case len(d.values) > scanned+1:
		d.at[s] = i
	}
	return i
}

// collect builds the dictionaries of rows.
func (e *encoder) collect(rows []Row) {
	for k, c := range dictionaryColumns {
		e.dicts[k].collect(rows, dictionaryValue[c])
	}
}

// forget drops the encoded rows' strings, so that a pooled encoder keeps no batch alive.
func (e *encoder) forget() {
	for k := range e.dicts {
		clear(e.dicts[k].values)
		clear(e.dicts[k].at)
	}
}

// dictionaryValue reads each dictionary column's value of a row.
var dictionaryValue = map[int]func(*Row) string{
	colProvider:      func(r *Row) string { return r.Provider },
	colModel:         func(r *Row) string { return r.Model },
	colOperation:     func(r *Row) string { return r.Operation },
	colServiceTier:   func(r *Row) string { return r.ServiceTier },
	colStatus:        func(r *Row) string { return r.Status },
	colTeam:          func(r *Row) string { return r.Team },
	colFeature:       func(r *Row) string { return r.Feature },
	colEnv:           func(r *Row) string { return r.Env },
	colCostCenter:    func(r *Row) string { return r.CostCenter },
	colTraffic:       func(r *Row) string { return r.Traffic },
	colPromptVersion: func(r *Row) string { return r.PromptVersion },
	colModelPriced:   func(r *Row) string { return r.ModelPriced },
	colPriceVersion:  func(r *Row) string { return r.PriceVersion },
	colSource:        func(r *Row) string { return r.Source },
}

// dictionaryMetadata is the size of a dictionary batch's metadata, padded, when its id is
// not 0 and it holds values (a field at its default is left out, 8 bytes less).
const dictionaryMetadata = 176

// dictionaryMessageSize is at least the size of a dictionary batch message but its values
// and their offsets: its header and metadata, and the padding of its two buffers.
const dictionaryMessageSize = 8 + dictionaryMetadata + 2*7

// dictionariesSize is at least the size of the dictionary batch messages of the rows
// collected, 0 for a batch without dictionaries.
func (e *encoder) dictionariesSize() int {
	n := 0
	if !e.dictionaries {
		return 0
	}
	for k := range e.dicts {
		d := &e.dicts[k]
		n += dictionaryMessageSize + 4*(len(d.values)+1) + d.size
	}
	return n
}

// appendDictionary appends dictionary k's message: a dictionary batch holding a record
// batch of one string column, its values.
func (e *encoder) appendDictionary(dst []byte, k int) []byte {
	d := &e.dicts[k]
	values := len(d.values)
	offsets := 4 * (values + 1)
	body := pad8(offsets) + pad8(d.size)
	e.nodes = append(e.nodes[:0], int64(values))
	e.buffers = append(e.buffers[:0], [2]int64{0, 0}, [2]int64{0, int64(offsets)}, [2]int64{int64(pad8(offsets)), int64(d.size)})
	meta := e.message(headerDictionaryBatch, int64(k), values, body)
	dst = binary.LittleEndian.AppendUint32(dst, continuation)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(pad8(8+len(meta))-8))
	dst = append(dst, meta...)
	dst = zeros(dst, pad8(8+len(meta))-8-len(meta))
	at := len(dst)
	dst = zeros(dst, pad8(offsets))
	from := len(dst)
	for i, v := range d.values {
		dst = append(dst, v...)
		put(dst, at, i+1, len(dst)-from)
	}
	return zeros(dst, pad8(d.size)-d.size)
}

// zeros appends n zero bytes to b.
func zeros(b []byte, n int) []byte {
	b = slices.Grow(b, n)[:len(b)+n]
	clear(b[len(b)-n:])
	return b
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

// text writes dictionary column c: the index of each row's value, or in a batch without
// dictionaries the values.
func (e *encoder) text(rows []Row, c int) {
	if e.dictionaries {
		e.indices(dictionaryIndex[c])
	} else {
		e.strings(rows, dictionaryValue[c])
	}
}

// indices writes dictionary column k: the index of each row's value.
func (e *encoder) indices(k int) {
	ix := e.dicts[k].indices
	e.node(len(ix))
	out := e.out
	from := len(out)
	for _, i := range ix {
		out = binary.LittleEndian.AppendUint32(out, uint32(i))
	}
	e.out = out
	e.buffer(from)
}

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
	e.text(rows, colProvider)
	e.text(rows, colModel)
	e.text(rows, colOperation)
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.Input })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.Output })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.CachedInput })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.CacheWrite })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.CacheWrite1h })
	e.int64s(rows, func(r *Row) int64 { return r.Tokens.Reasoning })
	e.text(rows, colServiceTier)
	e.strings(rows, func(r *Row) string { return r.ResponseID })
	e.text(rows, colStatus)
	e.int64s(rows, func(r *Row) int64 { return r.LatencyMS })
	e.text(rows, colTeam)
	e.text(rows, colFeature)
	e.text(rows, colEnv)
	e.text(rows, colCostCenter)
	e.text(rows, colTraffic)
	e.stringLists(rows, tagCount, func(r *Row, j int) string { return r.ExtraTags[j].Key })
	e.stringLists(rows, tagCount, func(r *Row, j int) string { return r.ExtraTags[j].Value })
	e.strings(rows, func(r *Row) string { return r.WorkflowID })
	e.text(rows, colPromptVersion)
	e.bools(rows, func(r *Row) bool { return r.CacheHit })
	e.bools(rows, func(r *Row) bool { return r.Priced })
	e.text(rows, colModelPriced)
	e.text(rows, colPriceVersion)
	e.int64s(rows, func(r *Row) int64 { return r.CostPico })
	e.int64s(rows, func(r *Row) int64 { return r.SavingsPico })
	e.text(rows, colSource)
	e.stringLists(rows, unitCount, func(r *Row, j int) string { return r.Units[j].Key })
	e.unitInts(rows, func(u *Unit) int64 { return u.Count })
	e.unitInts(rows, func(u *Unit) int64 { return u.CostPico })
	e.bools(rows, func(r *Row) bool { return r.Estimated })
	e.strings(rows, func(r *Row) string { return r.EstimateReason })
}

// Arrow's Message.fbs, as its Go writer builds it: a Message table (version, header type,
// header, body length) whose header is a RecordBatch table (length, nodes, buffers).
const (
	metadataV5            = 4
	messageFields         = 5
	recordBatchFields     = 5
	dictionaryBatchFields = 3
)

// metadata returns the flatbuffer of the record batch's message, of rows rows and a body
// of size bytes, built as Arrow's writer builds it, so that the bytes are the same.
func (e *encoder) metadata(rows, size int) []byte {
	return e.message(headerRecordBatch, 0, rows, size)
}

// message returns the flatbuffer of a record batch's message (kind headerRecordBatch) or of
// dictionary id's (headerDictionaryBatch) holding the nodes and buffers noted.
func (e *encoder) message(kind byte, id int64, rows, size int) []byte {
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
	header := b.EndObject()
	if kind == headerDictionaryBatch {
		b.StartObject(dictionaryBatchFields)
		b.PrependInt64Slot(0, id, 0)
		b.PrependUOffsetTSlot(1, header, 0)
		b.PrependBoolSlot(2, false, false) // not a delta
		header = b.EndObject()
	}
	b.StartObject(messageFields)
	b.PrependInt16Slot(0, metadataV5, 0)
	b.PrependByteSlot(1, kind, 0)
	b.PrependUOffsetTSlot(2, header, 0)
	b.PrependInt64Slot(3, int64(size), 0)
	b.Finish(b.EndObject())
	return b.FinishedBytes()
}

// metaSize is the size of a record batch's metadata with its padding: the same for every
// batch of a format with rows (and for every batch without), since only the values of its
// fields change.
func metaSize(rows int, dictionaries bool) int {
	sizes := metaSizes()
	return sizes[min(rows, 1)][b2i(dictionaries)]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

var metaSizes = sync.OnceValue(func() (sizes [2][2]int) {
	for rows := range 2 {
		for dict := range 2 {
			e := &encoder{fb: flatbuffers.NewBuilder(0), dictionaries: dict == 1}
			e.reset(nil, 0)
			e.collect(make([]Row, rows))
			e.columns(make([]Row, rows))
			sizes[rows][dict] = pad8(8+len(e.metadata(rows, len(e.out)))) - 8
		}
	}
	return sizes
})
