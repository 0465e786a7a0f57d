package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/bitutil"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	flatbuffers "github.com/google/flatbuffers/go"
)

// Column positions in Schema.
const (
	colID = iota
	colTime
	colReceived
	colPartition
	colProvider
	colModel
	colOperation
	colInput
	colOutput
	colCachedInput
	colCacheWrite
	colCacheWrite1h
	colReasoning
	colServiceTier
	colResponseID
	colStatus
	colLatency
	colTeam
	colFeature
	colEnv
	colCostCenter
	colTraffic
	colTagKeys
	colTagValues
	colWorkflowID
	colPromptVersion
	colCacheHit
	colPriced
	colModelPriced
	colPriceVersion
	colCost
	colSavings
	colSource
	colUnitKeys
	colUnitCounts
	colUnitCosts
	colEstimated
	colEstimateReason
	numCols
)

// released is the number of columns of each schema version ever written, oldest first. A
// message an older stage wrote before an upgrade still decodes: the columns it lacks read as
// their zero value. Append here when adding columns.
var released = []int{colSavings + 1, colSource + 1, colUnitCosts + 1, colEstimateReason + 1}

var ts = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}

// Schema is the Arrow schema of a usage batch. Columns are only ever added at the end.
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.BinaryTypes.String},
	{Name: "time", Type: ts},
	{Name: "received", Type: ts},
	{Name: "partition", Type: arrow.PrimitiveTypes.Uint16},
	{Name: "provider", Type: arrow.BinaryTypes.String},
	{Name: "model", Type: arrow.BinaryTypes.String},
	{Name: "operation", Type: arrow.BinaryTypes.String},
	{Name: "input_tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "output_tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "cached_input_tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "cache_write_tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "cache_write_1h_tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "reasoning_tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "service_tier", Type: arrow.BinaryTypes.String},
	{Name: "response_id", Type: arrow.BinaryTypes.String},
	{Name: "status", Type: arrow.BinaryTypes.String},
	{Name: "latency_ms", Type: arrow.PrimitiveTypes.Int64},
	{Name: "team", Type: arrow.BinaryTypes.String},
	{Name: "feature", Type: arrow.BinaryTypes.String},
	{Name: "env", Type: arrow.BinaryTypes.String},
	{Name: "cost_center", Type: arrow.BinaryTypes.String},
	{Name: "traffic", Type: arrow.BinaryTypes.String},
	{Name: "tag_keys", Type: arrow.ListOf(arrow.BinaryTypes.String)},
	{Name: "tag_values", Type: arrow.ListOf(arrow.BinaryTypes.String)},
	{Name: "workflow_id", Type: arrow.BinaryTypes.String},
	{Name: "prompt_version", Type: arrow.BinaryTypes.String},
	{Name: "cache_hit", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "priced", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "model_priced", Type: arrow.BinaryTypes.String},
	{Name: "price_version", Type: arrow.BinaryTypes.String},
	{Name: "cost_pico_usd", Type: arrow.PrimitiveTypes.Int64},
	{Name: "savings_pico_usd", Type: arrow.PrimitiveTypes.Int64},
	{Name: "source", Type: arrow.BinaryTypes.String},
	{Name: "unit_keys", Type: arrow.ListOf(arrow.BinaryTypes.String)},
	{Name: "unit_counts", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64)},
	{Name: "unit_costs_pico_usd", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64)},
	{Name: "estimated", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "estimate_reason", Type: arrow.BinaryTypes.String},
}, nil)

// Record builds an Arrow record from rows. The caller releases it.
//
// The columns are laid out directly as Go slices, each allocated once at its final size,
// rather than through Arrow's builders: those grow their buffers by doubling and cost an
// interface call per value, which made building a record as expensive as everything else the
// collector does with an event (BenchmarkEncode).
func Record(rows []Row) arrow.Record { return record(rows, nil) }

// record is Record with the columns' buffers from sc.
func record(rows []Row, sc *scratch) arrow.Record {
	n := len(rows)
	cols := make([]arrow.Array, numCols)
	str := func(c int, get func(*Row) string) {
		cols[c] = stringArray(rows, get, sc)
	}
	i64 := func(c int, get func(*Row) int64) {
		v := sc.int64s(n)
		for i := range rows {
			v[i] = get(&rows[i])
		}
		cols[c] = fixedArray(Schema.Field(c).Type, n, arrow.Int64Traits.CastToBytes(v))
	}
	boo := func(c int, get func(*Row) bool) {
		bits := sc.bytes(int(bitutil.BytesForBits(int64(n))))
		for i := range rows {
			if get(&rows[i]) {
				bitutil.SetBit(bits, i)
			}
		}
		cols[c] = fixedArray(arrow.FixedWidthTypes.Boolean, n, bits)
	}
	str(colID, func(r *Row) string { return r.ID })
	i64(colTime, func(r *Row) int64 { return r.Time.UnixMilli() })
	i64(colReceived, func(r *Row) int64 { return r.Received.UnixMilli() })
	parts := arrow.Uint16Traits.CastFromBytes(sc.bytes(2 * n))
	for i := range rows {
		parts[i] = uint16(rows[i].Partition)
	}
	cols[colPartition] = fixedArray(arrow.PrimitiveTypes.Uint16, n, arrow.Uint16Traits.CastToBytes(parts))
	str(colProvider, func(r *Row) string { return r.Provider })
	str(colModel, func(r *Row) string { return r.Model })
	str(colOperation, func(r *Row) string { return r.Operation })
	i64(colInput, func(r *Row) int64 { return r.Tokens.Input })
	i64(colOutput, func(r *Row) int64 { return r.Tokens.Output })
	i64(colCachedInput, func(r *Row) int64 { return r.Tokens.CachedInput })
	i64(colCacheWrite, func(r *Row) int64 { return r.Tokens.CacheWrite })
	i64(colCacheWrite1h, func(r *Row) int64 { return r.Tokens.CacheWrite1h })
	i64(colReasoning, func(r *Row) int64 { return r.Tokens.Reasoning })
	str(colServiceTier, func(r *Row) string { return r.ServiceTier })
	str(colResponseID, func(r *Row) string { return r.ResponseID })
	str(colStatus, func(r *Row) string { return r.Status })
	i64(colLatency, func(r *Row) int64 { return r.LatencyMS })
	str(colTeam, func(r *Row) string { return r.Team })
	str(colFeature, func(r *Row) string { return r.Feature })
	str(colEnv, func(r *Row) string { return r.Env })
	str(colCostCenter, func(r *Row) string { return r.CostCenter })
	str(colTraffic, func(r *Row) string { return r.Traffic })
	cols[colTagKeys] = tagList(rows, func(t Tag) string { return t.Key }, sc)
	cols[colTagValues] = tagList(rows, func(t Tag) string { return t.Value }, sc)
	str(colWorkflowID, func(r *Row) string { return r.WorkflowID })
	str(colPromptVersion, func(r *Row) string { return r.PromptVersion })
	boo(colCacheHit, func(r *Row) bool { return r.CacheHit })
	boo(colPriced, func(r *Row) bool { return r.Priced })
	str(colModelPriced, func(r *Row) string { return r.ModelPriced })
	str(colPriceVersion, func(r *Row) string { return r.PriceVersion })
	i64(colCost, func(r *Row) int64 { return r.CostPico })
	i64(colSavings, func(r *Row) int64 { return r.SavingsPico })
	str(colSource, func(r *Row) string { return r.Source })
	cols[colUnitKeys] = unitKeys(rows, sc)
	cols[colUnitCounts] = unitInts(rows, func(u *Unit) int64 { return u.Count }, sc)
	cols[colUnitCosts] = unitInts(rows, func(u *Unit) int64 { return u.CostPico }, sc)
	boo(colEstimated, func(r *Row) bool { return r.Estimated })
	str(colEstimateReason, func(r *Row) string { return r.EstimateReason })
	rec := array.NewRecord(Schema, cols, int64(n))
	for _, c := range cols {
		c.Release() // the record holds its own reference
	}
	return rec
}

// fixedArray is a column of n fixed-width values (or bits) without nulls held in values.
func fixedArray(t arrow.DataType, n int, values []byte) arrow.Array {
	d := array.NewData(t, n, []*memory.Buffer{nil, memory.NewBufferBytes(values)}, nil, 0, 0)
	defer d.Release()
	return array.MakeFromData(d)
}

// stringArray is the column of get(row) for every row.
func stringArray(rows []Row, get func(*Row) string, sc *scratch) arrow.Array {
	size := 0
	for i := range rows {
		size += len(get(&rows[i]))
	}
	offsets := sc.int32s(len(rows) + 1)
	data := sc.bytes(size)[:0]
	for i := range rows {
		data = append(data, get(&rows[i])...)
		offsets[i+1] = int32(len(data))
	}
	return stringsFrom(offsets, data)
}

// tagList is the list column of get(tag) for the extra tags of every row.
func tagList(rows []Row, get func(Tag) string, sc *scratch) arrow.Array {
	count, size := 0, 0
	for i := range rows {
		count += len(rows[i].ExtraTags)
		for _, t := range rows[i].ExtraTags {
			size += len(get(t))
		}
	}
	listOffsets := sc.int32s(len(rows) + 1)
	offsets := sc.int32s(count + 1)
	data := sc.bytes(size)[:0]
	k := 0
	for i := range rows {
		for _, t := range rows[i].ExtraTags {
			data = append(data, get(t)...)
			k++
			offsets[k] = int32(len(data))
		}
		listOffsets[i+1] = int32(k)
	}
	values := stringsFrom(offsets, data)
	defer values.Release()
	d := array.NewData(arrow.ListOf(arrow.BinaryTypes.String), len(rows),
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(listOffsets))},
		[]arrow.ArrayData{values.Data()}, 0, 0)
	defer d.Release()
	return array.MakeFromData(d)
}

// unitListOffsets are the list offsets of the unit columns: row i's units are values
// [offsets[i], offsets[i+1]).
func unitListOffsets(rows []Row, sc *scratch) []int32 {
	offsets := sc.int32s(len(rows) + 1)
	for i := range rows {
		offsets[i+1] = offsets[i] + int32(len(rows[i].Units))
	}
	return offsets
}

// listArray is a list column of len(offsets)-1 rows over values.
func listArray(t arrow.DataType, offsets []int32, values arrow.Array) arrow.Array {
	defer values.Release()
	d := array.NewData(t, len(offsets)-1,
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets))},
		[]arrow.ArrayData{values.Data()}, 0, 0)
	defer d.Release()
	return array.MakeFromData(d)
}

// unitKeys is the list column of the unit keys of every row.
func unitKeys(rows []Row, sc *scratch) arrow.Array {
	listOffsets := unitListOffsets(rows, sc)
	offsets := sc.int32s(int(listOffsets[len(rows)]) + 1)
	size := 0
	for i := range rows {
		for _, u := range rows[i].Units {
			size += len(u.Key)
		}
	}
	data := sc.bytes(size)[:0]
	k := 0
	for i := range rows {
		for _, u := range rows[i].Units {
			data = append(data, u.Key...)
			k++
			offsets[k] = int32(len(data))
		}
	}
	return listArray(Schema.Field(colUnitKeys).Type, listOffsets, stringsFrom(offsets, data))
}

// unitInts is the list column of get(unit) for the units of every row.
func unitInts(rows []Row, get func(*Unit) int64, sc *scratch) arrow.Array {
	listOffsets := unitListOffsets(rows, sc)
	v := sc.int64s(int(listOffsets[len(rows)]))[:0]
	for i := range rows {
		for j := range rows[i].Units {
			v = append(v, get(&rows[i].Units[j]))
		}
	}
	return listArray(arrow.ListOf(arrow.PrimitiveTypes.Int64), listOffsets,
		fixedArray(arrow.PrimitiveTypes.Int64, len(v), arrow.Int64Traits.CastToBytes(v)))
}

func stringsFrom(offsets []int32, data []byte) arrow.Array {
	d := array.NewData(arrow.BinaryTypes.String, len(offsets)-1, []*memory.Buffer{
		nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets)), memory.NewBufferBytes(data),
	}, nil, 0, 0)
	defer d.Release()
	return array.MakeFromData(d)
}

// Encode serializes rows as an Arrow IPC stream holding one record batch.
func Encode(rows []Row) ([]byte, error) { return AppendEncoded(nil, rows) }

// bodySize is the number of bytes in rec's buffers, the bulk of its IPC encoding.
func bodySize(rec arrow.Record) int {
	n := 0
	var add func(d arrow.ArrayData)
	add = func(d arrow.ArrayData) {
		for _, b := range d.Buffers() {
			if b != nil {
				n += b.Len() + 8 // each buffer is padded to 8 bytes
			}
		}
		for _, c := range d.Children() {
			add(c)
		}
	}
	for _, col := range rec.Columns() {
		add(col.Data())
	}
	return n
}

// Decode reads an Arrow IPC stream written by Encode, or one compressed by AppendCompressed.
// Strings are copied, so the rows do not hold on to data. A payload that is not such a stream — truncated, corrupt, another schema —
// returns an error; it never panics.
func Decode(data []byte) (rows []Row, err error) { return AppendDecoded(nil, data) }

// AppendDecoded is Decode appending the rows to dst, so that a consumer collecting many
// messages into one batch copies each row once. On error it returns dst unchanged in length.
func AppendDecoded(dst []Row, data []byte) (rows []Row, err error) {
	n := len(dst)
	defer func() {
		// Offsets are checked where a column is read, not at every value: a corrupt one makes
		// a string slice panic, and a poison message must become an error, not a crash.
		if p := recover(); p != nil {
			err = fmt.Errorf("decode arrow batch: corrupt payload: %v", p)
		}
		if err != nil {
			rows = dst[:n]
		}
	}()
	if Compressed(data) {
		sp, stream, err := decompressed(data)
		if err != nil {
			return nil, fmt.Errorf("decode arrow batch: %w", err)
		}
		defer streamPool.Put(sp)
		data = stream
	}
	if rows, err = appendDecoded(dst, data); err != nil {
		return nil, fmt.Errorf("decode arrow batch: %w", err)
	}
	return rows, nil
}

// Decode trusts no length it reads: the schema message must be byte for byte one Encode
// writes or wrote (only released schemas decode), every message must lie within the payload
// (checkFraming), and every buffer, row count and offset within its message (decode.go), so
// that a corrupt length can never make it allocate more than a small multiple of the payload
// (Arrow's IPC reader allocates what a corrupt schema claims, hundreds of gigabytes, which is
// a fatal error, not a panic to recover from; found by FuzzBatchDecode).

// schemaVersion is a released schema and the IPC stream's first message as Encode wrote it.
type schemaVersion struct {
	schema  *arrow.Schema
	message []byte
}

var schemaVersions = sync.OnceValues(func() ([]schemaVersion, error) {
	var vs []schemaVersion
	for _, k := range released {
		s := arrow.NewSchema(Schema.Fields()[:k], nil)
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(s))
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("write arrow schema message: %w", err)
		}
		// Close wrote the schema message and the 8-byte end-of-stream marker.
		vs = append(vs, schemaVersion{s, buf.Bytes()[:buf.Len()-8]})
	}
	return vs, nil
})

const continuation = 0xFFFFFFFF

// checkFraming walks the messages of an IPC stream: continuation marker, metadata length,
// flatbuffer metadata, body. It reads the body length from the metadata as the IPC reader
// would (and may panic on corrupt metadata, like the reader), and returns the messages as
// slices of data.
func checkFraming(data []byte) ([]message, *arrow.Schema, error) {
	vs, err := schemaVersions()
	if err != nil {
		return nil, nil, err
	}
	var schema *arrow.Schema
	for _, v := range vs {
		if bytes.HasPrefix(data, v.message) {
			schema = v.schema
		}
	}
	if schema == nil {
		return nil, nil, errors.New("the payload does not start with the schema message of " + SchemaName)
	}
	var msgs []message
	for rest := data; len(rest) > 0; {
		if len(rest) < 8 || binary.LittleEndian.Uint32(rest) != continuation {
			return nil, nil, fmt.Errorf("no message header at byte %d", len(data)-len(rest))
		}
		n := int32(binary.LittleEndian.Uint32(rest[4:]))
		rest = rest[8:]
		if n == 0 {
			return msgs, schema, nil // end of stream
		}
		if n < 4 || int(n) > len(rest) {
			return nil, nil, fmt.Errorf("message metadata of %d bytes at byte %d exceeds the payload", n, len(data)-len(rest))
		}
		meta := rest[:n]
		rest = rest[n:]
		// Message.bodyLength is the fourth field of the flatbuffer table (vtable offset 10).
		t := flatbuffers.Table{Bytes: meta, Pos: flatbuffers.GetUOffsetT(meta)}
		var body int64
		if o := flatbuffers.UOffsetT(t.Offset(10)); o != 0 {
			body = t.GetInt64(o + t.Pos)
		}
		if body < 0 || body > int64(len(rest)) {
			return nil, nil, fmt.Errorf("message body of %d bytes at byte %d exceeds the payload", body, len(data)-len(rest))
		}
		msgs = append(msgs, message{meta: meta, body: rest[:body]})
		rest = rest[body:]
	}
	return msgs, schema, nil
}

// message is one IPC message of a payload, in place.
type message struct{ meta, body []byte }
