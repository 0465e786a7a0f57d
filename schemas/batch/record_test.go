package batch

import (
	"bytes"
	"slices"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/bitutil"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// The reference the encoder is tested against: rows as an Arrow record, built column by
// column with Arrow's arrays, for Arrow's own ipc.Writer to write.

// arrowRecord is rows as an Arrow record of plainSchema, each column an array over Go
// slices, as the releases before dictionaries wrote them. The caller releases it.
func arrowRecord(rows []Row) arrow.Record {
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
		bits := make([]byte, int(bitutil.BytesForBits(int64(n))))
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
	parts := arrow.Uint16Traits.CastFromBytes(make([]byte, 2*n))
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
	rec := array.NewRecord(plainSchema, cols, int64(n))
	for _, c := range cols {
		c.Release() // the record holds its own reference
	}
	return rec
}

// dictionaryRecord is plain, a record of plainSchema, as a record of Schema: each of the
// dictionaryColumns an array of indices into its distinct values, in the order they first
// occur. The caller releases both.
func dictionaryRecord(plain arrow.Record) arrow.Record {
	cols := slices.Clone(plain.Columns())
	for _, c := range dictionaryColumns {
		values := cols[c].(*array.String)
		indices := make([]int32, values.Len())
		var distinct []string
		seen := map[string]int32{}
		for i := range indices {
			v := values.Value(i)
			j, ok := seen[v]
			if !ok {
				j = int32(len(distinct))
				seen[v] = j
				distinct = append(distinct, v)
			}
			indices[i] = j
		}
		offsets, data := []int32{0}, []byte{}
		for _, v := range distinct {
			data = append(data, v...)
			offsets = append(offsets, int32(len(data)))
		}
		ix := fixedArray(arrow.PrimitiveTypes.Int32, len(indices), arrow.Int32Traits.CastToBytes(indices))
		dict := stringsFrom(offsets, data)
		cols[c] = array.NewDictionaryArray(dictionaryType, ix, dict)
		ix.Release()
		dict.Release()
		defer cols[c].Release()
	}
	return array.NewRecord(Schema, cols, plain.NumRows())
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
	data := make([]byte, size)[:0]
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
	data := make([]byte, size)[:0]
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
	offsets := make([]int32, int(listOffsets[len(rows)])+1)
	size := 0
	for i := range rows {
		for _, u := range rows[i].Units {
			size += len(u.Key)
		}
	}
	data := make([]byte, size)[:0]
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
	v := make([]int64, 0, int(listOffsets[len(rows)]))
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

// writeIPC is rec as an IPC stream, as Arrow's own writer writes it.
func writeIPC(t testing.TB, rec arrow.Record) []byte {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
