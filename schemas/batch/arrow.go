package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
func Record(rows []Row) arrow.Record {
	n := len(rows)
	cols := make([]arrow.Array, numCols)
	str := func(c int, get func(*Row) string) {
		cols[c] = stringArray(rows, get)
	}
	i64 := func(c int, get func(*Row) int64) {
		v := make([]int64, n)
		for i := range rows {
			v[i] = get(&rows[i])
		}
		cols[c] = fixedArray(Schema.Field(c).Type, n, arrow.Int64Traits.CastToBytes(v))
	}
	boo := func(c int, get func(*Row) bool) {
		bits := make([]byte, bitutil.BytesForBits(int64(n)))
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
	parts := make([]uint16, n)
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
	cols[colTagKeys] = tagList(rows, func(t Tag) string { return t.Key })
	cols[colTagValues] = tagList(rows, func(t Tag) string { return t.Value })
	str(colWorkflowID, func(r *Row) string { return r.WorkflowID })
	str(colPromptVersion, func(r *Row) string { return r.PromptVersion })
	boo(colCacheHit, func(r *Row) bool { return r.CacheHit })
	boo(colPriced, func(r *Row) bool { return r.Priced })
	str(colModelPriced, func(r *Row) string { return r.ModelPriced })
	str(colPriceVersion, func(r *Row) string { return r.PriceVersion })
	i64(colCost, func(r *Row) int64 { return r.CostPico })
	i64(colSavings, func(r *Row) int64 { return r.SavingsPico })
	str(colSource, func(r *Row) string { return r.Source })
	cols[colUnitKeys] = unitKeys(rows)
	cols[colUnitCounts] = unitInts(rows, func(u *Unit) int64 { return u.Count })
	cols[colUnitCosts] = unitInts(rows, func(u *Unit) int64 { return u.CostPico })
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
func stringArray(rows []Row, get func(*Row) string) arrow.Array {
	size := 0
	for i := range rows {
		size += len(get(&rows[i]))
	}
	offsets := make([]int32, len(rows)+1)
	data := make([]byte, 0, size)
	for i := range rows {
		data = append(data, get(&rows[i])...)
		offsets[i+1] = int32(len(data))
	}
	return stringsFrom(offsets, data)
}

// tagList is the list column of get(tag) for the extra tags of every row.
func tagList(rows []Row, get func(Tag) string) arrow.Array {
	count, size := 0, 0
	for i := range rows {
		count += len(rows[i].ExtraTags)
		for _, t := range rows[i].ExtraTags {
			size += len(get(t))
		}
	}
	listOffsets := make([]int32, len(rows)+1)
	offsets := make([]int32, count+1)
	data := make([]byte, 0, size)
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
func unitListOffsets(rows []Row) []int32 {
	offsets := make([]int32, len(rows)+1)
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
func unitKeys(rows []Row) arrow.Array {
	listOffsets := unitListOffsets(rows)
	offsets := make([]int32, listOffsets[len(rows)]+1)
	var data []byte
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
func unitInts(rows []Row, get func(*Unit) int64) arrow.Array {
	listOffsets := unitListOffsets(rows)
	v := make([]int64, 0, listOffsets[len(rows)])
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
func Encode(rows []Row) ([]byte, error) {
	rec := Record(rows)
	defer rec.Release()
	// Sized up front: growing the buffer while the IPC writer copies columns into it cost as
	// much as building the record.
	var buf bytes.Buffer
	buf.Grow(bodySize(rec) + 16<<10)
	w := ipc.NewWriter(&buf, ipc.WithSchema(Schema))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("write arrow record of %d rows: %w", len(rows), err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("close arrow stream: %w", err)
	}
	return buf.Bytes(), nil
}

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

// Decode reads an Arrow IPC stream written by Encode. Strings are copied, so the rows do not
// hold on to data. A payload that is not such a stream — truncated, corrupt, another schema —
// returns an error; it never panics.
func Decode(data []byte) (rows []Row, err error) { return AppendDecoded(nil, data) }

// AppendDecoded is Decode appending the rows to dst, so that a consumer collecting many
// messages into one batch copies each row once. On error it returns dst unchanged in length.
func AppendDecoded(dst []Row, data []byte) (rows []Row, err error) {
	n := len(dst)
	defer func() {
		// The IPC reader trusts the flatbuffer metadata it reads; corrupt input can make it
		// index out of range. A poison message must become an error, not a crash.
		if p := recover(); p != nil {
			err = fmt.Errorf("decode arrow batch: corrupt payload: %v", p)
		}
		if err != nil {
			rows = dst[:n]
		}
	}()
	rows = dst
	msgs, schema, err := checkFraming(data)
	if err != nil {
		return nil, fmt.Errorf("decode arrow batch: %w", err)
	}
	rd, err := ipc.NewReaderFromMessageReader(&payloadMessages{msgs: msgs, refs: 1},
		ipc.WithSchema(schema), ipc.WithAllocator(boundedAllocator{max: len(data) + 64}))
	if err != nil {
		return nil, fmt.Errorf("decode arrow batch: %w", err)
	}
	defer rd.Release()
	for rd.Next() {
		rows, err = appendRecord(rows, rd.Record())
		if err != nil {
			return nil, err
		}
	}
	if err := rd.Err(); err != nil {
		return nil, fmt.Errorf("decode arrow batch: %w", err)
	}
	return rows, nil
}

func appendRecord(rows []Row, rec arrow.Record) ([]Row, error) {
	k := int(rec.NumCols())
	if k > numCols || !rec.Schema().Equal(arrow.NewSchema(Schema.Fields()[:k], nil)) {
		return nil, fmt.Errorf("decode arrow batch: schema %s is not %s", rec.Schema(), SchemaName)
	}
	n := int(rec.NumRows())
	for i := 0; i < k; i++ {
		if rec.Column(i).Len() != n || rec.Column(i).NullN() != 0 {
			return nil, fmt.Errorf("decode arrow batch: column %s has %d values (%d null), want %d non-null",
				Schema.Field(i).Name, rec.Column(i).Len(), rec.Column(i).NullN(), n)
		}
	}
	i64 := func(c int) *array.Int64 { return rec.Column(c).(*array.Int64) }
	tsa := func(c int) *array.Timestamp { return rec.Column(c).(*array.Timestamp) }
	boo := func(c int) *array.Boolean { return rec.Column(c).(*array.Boolean) }
	var cols [numCols]stringColumn // a column the record lacks reads as ""
	for c := range k {
		if a, ok := rec.Column(c).(*array.String); ok {
			cols[c] = newStringColumn(a)
		}
	}
	s := func(c, i int) string { return cols[c].value(i) }
	keys, vals := rec.Column(colTagKeys).(*array.List), rec.Column(colTagValues).(*array.List)
	keyv, valv := newStringColumn(keys.ListValues().(*array.String)), newStringColumn(vals.ListValues().(*array.String))
	var units *unitColumns // nil when the record's schema version has no units
	if k > colUnitCosts {
		units = newUnitColumns(rec)
	}
	rows = slices.Grow(rows, n)
	var err error
	for i := 0; i < n; i++ {
		r := Row{
			ID:        s(colID, i),
			Time:      time.UnixMilli(int64(tsa(colTime).Value(i))).UTC(),
			Received:  time.UnixMilli(int64(tsa(colReceived).Value(i))).UTC(),
			Partition: int(rec.Column(colPartition).(*array.Uint16).Value(i)),
			Provider:  s(colProvider, i), Model: s(colModel, i), Operation: s(colOperation, i),
			ServiceTier: s(colServiceTier, i), ResponseID: s(colResponseID, i), Status: s(colStatus, i),
			LatencyMS: i64(colLatency).Value(i),
			Team:      s(colTeam, i), Feature: s(colFeature, i), Env: s(colEnv, i),
			CostCenter: s(colCostCenter, i), Traffic: s(colTraffic, i),
			WorkflowID: s(colWorkflowID, i), PromptVersion: s(colPromptVersion, i),
			CacheHit: boo(colCacheHit).Value(i), Priced: boo(colPriced).Value(i),
			ModelPriced: s(colModelPriced, i), PriceVersion: s(colPriceVersion, i),
			CostPico: i64(colCost).Value(i), SavingsPico: i64(colSavings).Value(i),
			Source: s(colSource, i), EstimateReason: s(colEstimateReason, i),
		}
		if k > colEstimated {
			r.Estimated = boo(colEstimated).Value(i)
		}
		r.Tokens.Input = i64(colInput).Value(i)
		r.Tokens.Output = i64(colOutput).Value(i)
		r.Tokens.CachedInput = i64(colCachedInput).Value(i)
		r.Tokens.CacheWrite = i64(colCacheWrite).Value(i)
		r.Tokens.CacheWrite1h = i64(colCacheWrite1h).Value(i)
		r.Tokens.Reasoning = i64(colReasoning).Value(i)
		ks, ke := keys.ValueOffsets(i)
		vs, ve := vals.ValueOffsets(i)
		if ke-ks != ve-vs {
			return nil, fmt.Errorf("decode arrow batch: row %d has %d tag keys but %d tag values", i, ke-ks, ve-vs)
		}
		for j := ks; j < ke; j++ {
			r.ExtraTags = append(r.ExtraTags, Tag{keyv.value(int(j)), valv.value(int(vs + j - ks))})
		}
		if units != nil {
			if r.Units, err = units.row(i); err != nil {
				return nil, err
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// unitColumns reads the three unit list columns of a record.
type unitColumns struct {
	keys, counts, costs *array.List
	keyv                stringColumn
	countv, costv       []int64
}

func newUnitColumns(rec arrow.Record) *unitColumns {
	c := &unitColumns{keys: rec.Column(colUnitKeys).(*array.List), counts: rec.Column(colUnitCounts).(*array.List),
		costs: rec.Column(colUnitCosts).(*array.List)}
	c.keyv = newStringColumn(c.keys.ListValues().(*array.String))
	c.countv = c.counts.ListValues().(*array.Int64).Int64Values()
	c.costv = c.costs.ListValues().(*array.Int64).Int64Values()
	return c
}

// row returns the units of row i, nil when it has none.
func (c *unitColumns) row(i int) ([]Unit, error) {
	ks, ke := c.keys.ValueOffsets(i)
	ns, ne := c.counts.ValueOffsets(i)
	cs, ce := c.costs.ValueOffsets(i)
	if ke-ks != ne-ns || ke-ks != ce-cs {
		return nil, fmt.Errorf("decode arrow batch: row %d has %d unit keys, %d counts and %d costs", i, ke-ks, ne-ns, ce-cs)
	}
	if ke == ks {
		return nil, nil
	}
	units := make([]Unit, 0, ke-ks)
	for j := int64(0); j < ke-ks; j++ {
		units = append(units, Unit{Key: c.keyv.value(int(ks + j)), Count: c.countv[ns+j], CostPico: c.costv[cs+j]})
	}
	return units, nil
}

// The IPC reader trusts the lengths and counts it reads, and allocates what they claim before
// it finds out they are wrong: a corrupt field count in the schema or a corrupt length can
// make it allocate hundreds of gigabytes, which is a fatal error, not a panic that Decode can
// recover from. So Decode checks what the reader would trust first: the schema message must be
// byte for byte one Encode writes or wrote (Decode accepts only released schemas anyway), every message
// length must lie within the payload (checkFraming), and no single allocation may be larger
// than the payload (boundedAllocator). Found by FuzzBatchDecode.

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

// payloadMessages gives the IPC reader the messages of a payload in place, where the reader's
// own message reader copies every body into a new buffer first (an eighth of the pipeline's
// allocations). The arrays then point into the payload only until appendRecord has copied
// their values out.
type payloadMessages struct {
	msgs []message
	cur  *ipc.Message
	refs int64
}

func (p *payloadMessages) Message() (*ipc.Message, error) {
	if p.cur != nil {
		p.cur.Release()
		p.cur = nil
	}
	if len(p.msgs) == 0 {
		return nil, io.EOF
	}
	m := p.msgs[0]
	p.msgs = p.msgs[1:]
	p.cur = ipc.NewMessage(memory.NewBufferBytes(m.meta), memory.NewBufferBytes(m.body))
	return p.cur, nil
}

func (p *payloadMessages) Retain() { atomic.AddInt64(&p.refs, 1) }

func (p *payloadMessages) Release() {
	if atomic.AddInt64(&p.refs, -1) == 0 && p.cur != nil {
		p.cur.Release()
		p.cur = nil
	}
}

// boundedAllocator refuses any allocation larger than the payload, which no honest buffer
// needs. It has to panic, the only way to stop the reader; Decode recovers.
type boundedAllocator struct{ max int }

func (a boundedAllocator) Allocate(size int) []byte {
	a.check(size)
	return memory.DefaultAllocator.Allocate(size)
}

func (a boundedAllocator) Reallocate(size int, b []byte) []byte {
	a.check(size)
	return memory.DefaultAllocator.Reallocate(size, b)
}

func (a boundedAllocator) Free(b []byte) { memory.DefaultAllocator.Free(b) }

func (a boundedAllocator) check(size int) {
	if size > a.max {
		panic(fmt.Sprintf("allocation of %d bytes for a payload of %d bytes", size, a.max))
	}
}

// stringColumn reads a string column through one copy of its value bytes: every value is a
// substring of that copy, so decoding allocates once per column rather than once per value,
// and the rows never point into the payload. Out-of-range offsets in a corrupt payload panic
// in value, which Decode turns into an error.
type stringColumn struct {
	data    string
	offsets []int32
}

func newStringColumn(a *array.String) stringColumn {
	return stringColumn{data: string(a.ValueBytes()), offsets: a.ValueOffsets()}
}

func (c *stringColumn) value(i int) string {
	if c.offsets == nil {
		return "" // a column the record's schema version lacks
	}
	base := c.offsets[0]
	return c.data[c.offsets[i]-base : c.offsets[i+1]-base]
}
