package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	flatbuffers "github.com/google/flatbuffers/go"
)

// The decoder reads a payload's record batches in place: it walks each batch's flatbuffer
// metadata (the field nodes and buffers of the columns, depth first, as the Arrow IPC format
// lays them out) and reads the values straight out of the body. Arrow's IPC reader copies
// every buffer into a new allocation and builds the schema and an array object per column
// for each message first — twice the payload in garbage per decode, and every stage decodes
// every event (BenchmarkDecode). Strings are still copied, once per column, so that rows never
// point into the payload.

// Fields of the flatbuffer tables of Arrow's Message.fbs, as vtable offsets (4 + 2 × slot).
const (
	messageHeaderType = 6 // Message.header_type
	messageHeader     = 8 // Message.header (a union)
	batchLength       = 4 // RecordBatch.length
	batchNodes        = 6 // RecordBatch.nodes: [FieldNode{length, null_count: long}]
	batchBuffers      = 8 // RecordBatch.buffers: [Buffer{offset, length: long}]
	batchCompression  = 10
	dictionaryID      = 4 // DictionaryBatch.id
	dictionaryData    = 6 // DictionaryBatch.data (a RecordBatch)
	dictionaryIsDelta = 8 // DictionaryBatch.isDelta

	headerDictionaryBatch = 2 // MessageHeader.DictionaryBatch
	headerRecordBatch     = 3 // MessageHeader.RecordBatch
	structSize            = 16
)

// appendDecoded appends the rows of every record batch of the payload to dst.
func appendDecoded(dst []Row, data []byte) ([]Row, error) {
	msgs, release, err := checkFraming(data)
	if err != nil {
		return nil, err
	}
	var dicts *[len(dictionaryColumns)][]string // the latest of each id, for a dictionary schema
	if release.dictionary {
		dicts = new([len(dictionaryColumns)][]string)
	}
	for i, m := range msgs[1:] { // msgs[0] is the schema, checked by checkFraming
		kind, h, err := header(m)
		var b *batchReader
		switch {
		case err != nil:
		case kind == headerDictionaryBatch:
			err = readDictionary(h, m.body, dicts)
		default:
			b, err = readBatch(h, m.body)
		}
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i+1, err)
		}
		if b == nil {
			continue
		}
		if dst, err = b.appendRows(dst, release.cols, dicts); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// header returns the kind and the header table of a message: a record batch or a dictionary
// batch.
func header(m message) (byte, flatbuffers.Table, error) {
	t := flatbuffers.Table{Bytes: m.meta, Pos: flatbuffers.GetUOffsetT(m.meta)}
	var kind byte
	if o := flatbuffers.UOffsetT(t.Offset(messageHeaderType)); o != 0 {
		kind = t.GetByte(o + t.Pos)
	}
	var h flatbuffers.Table
	o := flatbuffers.UOffsetT(t.Offset(messageHeader))
	if (kind != headerRecordBatch && kind != headerDictionaryBatch) || o == 0 {
		return 0, h, fmt.Errorf("a message of type %d, not a record batch", kind)
	}
	t.Union(&h, o)
	return kind, h, nil
}

// readDictionary reads a dictionary batch (header h) into dicts, replacing the dictionary
// of its id: a record batch of one string column.
func readDictionary(h flatbuffers.Table, body []byte, dicts *[len(dictionaryColumns)][]string) error {
	if dicts == nil {
		return errors.New("a dictionary batch in a stream of a schema without dictionaries")
	}
	var id int64
	if o := flatbuffers.UOffsetT(h.Offset(dictionaryID)); o != 0 {
		id = h.GetInt64(o + h.Pos)
	}
	if id < 0 || id >= int64(len(dicts)) {
		return fmt.Errorf("dictionary %d of %d", id, len(dicts))
	}
	if o := flatbuffers.UOffsetT(h.Offset(dictionaryIsDelta)); o != 0 && h.GetBool(o+h.Pos) {
		return errors.New("a delta dictionary") // Encode never writes one
	}
	o := flatbuffers.UOffsetT(h.Offset(dictionaryData))
	if o == 0 {
		return fmt.Errorf("dictionary %d without values", id)
	}
	data := flatbuffers.Table{Bytes: h.Bytes, Pos: h.Indirect(o + h.Pos)}
	b, err := readBatch(data, body)
	if err != nil {
		return fmt.Errorf("dictionary %d: %w", id, err)
	}
	if _, err := b.node(b.n); err != nil {
		return fmt.Errorf("dictionary %d: %w", id, err)
	}
	values, err := b.strings(b.n)
	if err != nil {
		return fmt.Errorf("dictionary %d: %w", id, err)
	}
	d := make([]string, b.n)
	for i := range d {
		d[i] = values.value(i)
	}
	dicts[id] = d
	return nil
}

// batchReader reads the columns of one record batch in order.
type batchReader struct {
	n                    int    // rows
	nodes, buffers, body []byte // FieldNode and Buffer structs, and the body they point into
	nextNode, nextBuffer int
}

// readBatch reads the record batch table h, of a message with body.
func readBatch(h flatbuffers.Table, body []byte) (*batchReader, error) {
	if h.Offset(batchCompression) != 0 {
		return nil, errors.New("a compressed record batch") // Encode never compresses
	}
	b := &batchReader{body: body}
	if o := flatbuffers.UOffsetT(h.Offset(batchLength)); o != 0 {
		n := h.GetInt64(o + h.Pos)
		// Every row takes at least 8 bytes of time, every dictionary value 4 of offset.
		if n < 0 || n > int64(len(body)) {
			return nil, fmt.Errorf("%d rows in a body of %d bytes", n, len(body))
		}
		b.n = int(n)
	}
	vec := func(field flatbuffers.VOffsetT) []byte {
		o := flatbuffers.UOffsetT(h.Offset(field))
		if o == 0 {
			return nil
		}
		start := h.Vector(o)
		return h.Bytes[start : int(start)+h.VectorLen(o)*structSize]
	}
	b.nodes, b.buffers = vec(batchNodes), vec(batchBuffers)
	return b, nil
}

// node reads the next field node: its value count, which must be want unless want < 0, and no
// nulls, which Encode never writes.
func (b *batchReader) node(want int) (int, error) {
	if (b.nextNode+1)*structSize > len(b.nodes) {
		return 0, errors.New("fewer field nodes than columns")
	}
	d := b.nodes[b.nextNode*structSize:]
	b.nextNode++
	n, nulls := int64(binary.LittleEndian.Uint64(d)), int64(binary.LittleEndian.Uint64(d[8:]))
	if n < 0 || n > int64(len(b.body))+1 || (want >= 0 && n != int64(want)) || nulls != 0 {
		return 0, fmt.Errorf("a column of %d values (%d null), want %d non-null", n, nulls, want)
	}
	return int(n), nil
}

// buffer returns the next buffer, which must hold at least size bytes.
func (b *batchReader) buffer(size int) ([]byte, error) {
	if (b.nextBuffer+1)*structSize > len(b.buffers) {
		return nil, errors.New("fewer buffers than columns need")
	}
	d := b.buffers[b.nextBuffer*structSize:]
	b.nextBuffer++
	off, n := int64(binary.LittleEndian.Uint64(d)), int64(binary.LittleEndian.Uint64(d[8:]))
	if off < 0 || n < 0 || off > int64(len(b.body)) || n > int64(len(b.body))-off || n < int64(size) {
		return nil, fmt.Errorf("a buffer of %d bytes at %d, want at least %d in a body of %d", n, off, size, len(b.body))
	}
	return b.body[off : off+n], nil
}

// fixed reads a column of n values of width bytes each (the validity buffer is skipped: no
// column has nulls).
func (b *batchReader) fixed(n, width int) ([]byte, error) {
	if _, err := b.buffer(0); err != nil {
		return nil, err
	}
	return b.buffer(n * width)
}

// bits reads a boolean column of n values.
func (b *batchReader) bits(n int) ([]byte, error) {
	if _, err := b.buffer(0); err != nil {
		return nil, err
	}
	return b.buffer((n + 7) / 8)
}

// textColumn is a string column read in place: its offsets point into one copy of its
// value bytes, so that decoding allocates once per column, not once per value, and the rows
// never point into the payload; or a dictionary column's indices into its dictionary's
// values. A corrupt offset panics in value; the caller recovers.
type textColumn struct {
	data    string
	offsets []byte // n+1 little-endian int32
	base    int32
	dict    []string
	indices []byte // n little-endian int32, each checked to be within dict
}

func (c *textColumn) value(i int) string {
	if c.indices != nil {
		return c.dict[binary.LittleEndian.Uint32(c.indices[4*i:])]
	}
	if c.offsets == nil {
		return "" // a column the batch's schema version lacks
	}
	start := int32(binary.LittleEndian.Uint32(c.offsets[4*i:]))
	end := int32(binary.LittleEndian.Uint32(c.offsets[4*i+4:]))
	return c.data[start-c.base : end-c.base]
}

// strings reads a string column of n values, after its node.
func (b *batchReader) strings(n int) (textColumn, error) {
	if _, err := b.buffer(0); err != nil {
		return textColumn{}, err
	}
	if n == 0 { // a column without values may have no offsets at all
		_, err := b.buffer(0)
		if err == nil {
			_, err = b.buffer(0)
		}
		return textColumn{}, err
	}
	offsets, err := b.buffer(4 * (n + 1))
	if err != nil {
		return textColumn{}, err
	}
	data, err := b.buffer(0)
	if err != nil {
		return textColumn{}, err
	}
	first := int32(binary.LittleEndian.Uint32(offsets))
	last := int32(binary.LittleEndian.Uint32(offsets[4*n:]))
	if first < 0 || last < first || int(last) > len(data) {
		return textColumn{}, fmt.Errorf("string offsets %d to %d in %d bytes", first, last, len(data))
	}
	return textColumn{data: string(data[first:last]), offsets: offsets[:4*(n+1)], base: first}, nil
}

// dictionaryIndices reads the indices of a dictionary column of n values into dict, after
// its node.
func (b *batchReader) dictionaryIndices(n int, dict []string) (textColumn, error) {
	indices, err := b.fixed(n, 4)
	if err != nil {
		return textColumn{}, err
	}
	if n == 0 {
		return textColumn{}, nil
	}
	for i := range n {
		if j := binary.LittleEndian.Uint32(indices[4*i:]); j >= uint32(len(dict)) {
			return textColumn{}, fmt.Errorf("row %d's index %d in a dictionary of %d values", i, int32(j), len(dict))
		}
	}
	return textColumn{dict: dict, indices: indices[:4*n]}, nil
}

// listOffsets are a list column's n+1 little-endian int32 offsets into its values.
type listOffsets []byte

func (o listOffsets) at(i int) int32 { return int32(binary.LittleEndian.Uint32(o[4*i:])) }

// list reads the node and offsets of a list column of n lists, and the node of its values.
func (b *batchReader) list(n int) (offsets listOffsets, values int, err error) {
	if _, err := b.node(n); err != nil {
		return nil, 0, err
	}
	if _, err := b.buffer(0); err != nil {
		return nil, 0, err
	}
	size := 4 * (n + 1)
	if n == 0 {
		size = 0 // a column without lists may have no offsets at all
	}
	if offsets, err = b.buffer(size); err != nil {
		return nil, 0, err
	}
	if values, err = b.node(-1); err != nil {
		return nil, 0, err
	}
	for i := range n {
		if offsets.at(i) < 0 || offsets.at(i+1) < offsets.at(i) || int(offsets.at(i+1)) > values {
			return nil, 0, fmt.Errorf("list %d spans values %d to %d of %d", i, offsets.at(i), offsets.at(i+1), values)
		}
	}
	return offsets, values, nil
}

func (b *batchReader) stringList(n int) (listOffsets, textColumn, error) {
	offsets, m, err := b.list(n)
	if err != nil {
		return nil, textColumn{}, err
	}
	values, err := b.strings(m)
	return offsets, values, err
}

func (b *batchReader) intList(n int) (listOffsets, []byte, error) {
	offsets, m, err := b.list(n)
	if err != nil {
		return nil, nil, err
	}
	values, err := b.fixed(m, 8)
	return offsets, values, err
}

func int64At(b []byte, i int) int64 { return int64(binary.LittleEndian.Uint64(b[8*i:])) }

func bitAt(b []byte, i int) bool { return b[i>>3]>>(i&7)&1 == 1 }

// appendRows reads the batch's first cols columns (a released schema version's) into rows
// appended to dst; columns a version lacks read as zero values. dicts holds the dictionaries
// of a schema with dictionaries, nil for one without.
func (b *batchReader) appendRows(dst []Row, cols int, dicts *[len(dictionaryColumns)][]string) (rows []Row, err error) {
	n := b.n
	var (
		str      [numCols]textColumn
		i64      [numCols][]byte
		bools    [numCols][]byte
		parts    []byte
		tagOff   [2]listOffsets
		tagVals  [2]textColumn
		unitOff  [3]listOffsets
		unitKeys textColumn
		unitInts [2][]byte
	)
	for c := range cols {
		fail := func(err error) ([]Row, error) {
			return nil, fmt.Errorf("column %s: %w", Schema.Field(c).Name, err)
		}
		switch c {
		case colTagKeys, colTagValues:
			k := c - colTagKeys
			if tagOff[k], tagVals[k], err = b.stringList(n); err != nil {
				return fail(err)
			}
			continue
		case colUnitKeys:
			if unitOff[0], unitKeys, err = b.stringList(n); err != nil {
				return fail(err)
			}
			continue
		case colUnitCounts, colUnitCosts:
			k := c - colUnitCounts
			if unitOff[k+1], unitInts[k], err = b.intList(n); err != nil {
				return fail(err)
			}
			continue
		}
		if _, err := b.node(n); err != nil {
			return fail(err)
		}
		switch c {
		case colPartition:
			parts, err = b.fixed(n, 2)
		case colCacheHit, colPriced, colEstimated:
			bools[c], err = b.bits(n)
		case colTime, colReceived, colInput, colOutput, colCachedInput, colCacheWrite, colCacheWrite1h, colReasoning,
			colLatency, colCost, colSavings:
			i64[c], err = b.fixed(n, 8)
		default:
			if k := dictionaryIndex[c]; dicts != nil && k >= 0 {
				str[c], err = b.dictionaryIndices(n, dicts[k])
				break
			}
			str[c], err = b.strings(n)
		}
		if err != nil {
			return fail(err)
		}
	}
	// Every row's tags and units are slices of one array each, capped so that appending to
	// one row's never writes into the next row's.
	var tags []Tag
	if cols > colTagValues && n > 0 {
		tags = make([]Tag, tagOff[0].at(n)-tagOff[0].at(0))
	}
	var units []Unit
	if cols > colUnitCosts && n > 0 {
		units = make([]Unit, unitOff[0].at(n)-unitOff[0].at(0))
	}
	get := func(c, i int) int64 {
		if i64[c] == nil {
			return 0
		}
		return int64At(i64[c], i)
	}
	flag := func(c, i int) bool { return bools[c] != nil && bitAt(bools[c], i) }
	rows = slices.Grow(dst, n)
	for i := range n {
		r := Row{
			ID:          str[colID].value(i),
			Time:        time.UnixMilli(get(colTime, i)).UTC(),
			Received:    time.UnixMilli(get(colReceived, i)).UTC(),
			Partition:   int(binary.LittleEndian.Uint16(parts[2*i:])),
			Provider:    str[colProvider].value(i),
			Model:       str[colModel].value(i),
			Operation:   str[colOperation].value(i),
			ServiceTier: str[colServiceTier].value(i), ResponseID: str[colResponseID].value(i), Status: str[colStatus].value(i),
			LatencyMS: get(colLatency, i),
			Team:      str[colTeam].value(i), Feature: str[colFeature].value(i), Env: str[colEnv].value(i),
			CostCenter: str[colCostCenter].value(i), Traffic: str[colTraffic].value(i),
			WorkflowID: str[colWorkflowID].value(i), PromptVersion: str[colPromptVersion].value(i),
			CacheHit: flag(colCacheHit, i), Priced: flag(colPriced, i),
			ModelPriced: str[colModelPriced].value(i), PriceVersion: str[colPriceVersion].value(i),
			CostPico: get(colCost, i), SavingsPico: get(colSavings, i),
			Source: str[colSource].value(i), Estimated: flag(colEstimated, i), EstimateReason: str[colEstimateReason].value(i),
		}
		r.Tokens.Input = get(colInput, i)
		r.Tokens.Output = get(colOutput, i)
		r.Tokens.CachedInput = get(colCachedInput, i)
		r.Tokens.CacheWrite = get(colCacheWrite, i)
		r.Tokens.CacheWrite1h = get(colCacheWrite1h, i)
		r.Tokens.Reasoning = get(colReasoning, i)
		if tags != nil {
			ks, ke := tagOff[0].at(i), tagOff[0].at(i+1)
			vs, ve := tagOff[1].at(i), tagOff[1].at(i+1)
			if ke-ks != ve-vs {
				return nil, fmt.Errorf("row %d has %d tag keys but %d tag values", i, ke-ks, ve-vs)
			}
			if ke > ks {
				base := ks - tagOff[0].at(0)
				r.ExtraTags = tags[base : base+ke-ks : base+ke-ks]
				for j := range ke - ks {
					r.ExtraTags[j] = Tag{tagVals[0].value(int(ks + j)), tagVals[1].value(int(vs + j))}
				}
			}
		}
		if units != nil {
			ks, ke := unitOff[0].at(i), unitOff[0].at(i+1)
			ns, ne := unitOff[1].at(i), unitOff[1].at(i+1)
			cs, ce := unitOff[2].at(i), unitOff[2].at(i+1)
			if ke-ks != ne-ns || ke-ks != ce-cs {
				return nil, fmt.Errorf("row %d has %d unit keys, %d counts and %d costs", i, ke-ks, ne-ns, ce-cs)
			}
			if ke > ks {
				base := ks - unitOff[0].at(0)
				r.Units = units[base : base+ke-ks : base+ke-ks]
				for j := range ke - ks {
					r.Units[j] = Unit{Key: unitKeys.value(int(ks + j)), Count: int64At(unitInts[0], int(ns+j)), CostPico: int64At(unitInts[1], int(cs+j))}
				}
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}
