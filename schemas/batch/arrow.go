package batch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/ipc"
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

// released is each schema version ever written, oldest first: its number of columns, and
// whether its low-cardinality string columns are dictionary-encoded. A message an older stage
// wrote before an upgrade still decodes: the columns it lacks read as their zero value.
// Append here when adding columns.
var released = []schemaRelease{
	{colSavings + 1, false}, {colSource + 1, false}, {colUnitCosts + 1, false}, {colEstimateReason + 1, false},
	{numCols, true},
}

// plainVersion is the latest released schema without dictionaries, which Encode writes for
// a batch too small to pay for them (dictionaryMinRows).
const plainVersion = 3

type schemaRelease struct {
	cols       int
	dictionary bool
}

// dictionaryColumns are the string columns whose values repeat from row to row — a batch
// holds a handful of providers, models, teams and price versions — so that Encode writes each
// distinct value of a batch once, in a dictionary, and per row a 4-byte index into it. Each
// value otherwise cost its bytes and a 4-byte offset per row, which compression cannot shrink
// below 2–4 bytes a column and row: a realistic batch is 30 % smaller encoded, half its size
// compressed, and nats-server's CPU follows the compressed size (docs/benchmarks.md).
var dictionaryColumns = [...]int{
	colProvider, colModel, colOperation, colServiceTier, colStatus, colTeam, colFeature, colEnv,
	colCostCenter, colTraffic, colPromptVersion, colModelPriced, colPriceVersion, colSource,
}

// dictionaryIndex is dictionaryColumns' inverse: a column's place among them, or -1.
var dictionaryIndex = func() (ix [numCols]int) {
	for c := range ix {
		ix[c] = -1
	}
	for k, c := range dictionaryColumns {
		ix[c] = k
	}
	return ix
}()

// dictionaryType is a dictionary column's Arrow type. 32-bit indices, because a batch may
// hold as many distinct values as rows.
var dictionaryType = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}

var ts = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}

// plainSchema is the Arrow schema of a usage batch with every string column plain, as the
// releases before dictionaries wrote it. Columns are only ever added at the end.
var plainSchema = arrow.NewSchema([]arrow.Field{
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

// Schema is the Arrow schema of the batches Encode writes: plainSchema with the
// dictionaryColumns dictionary-encoded.
var Schema = func() *arrow.Schema {
	fields := plainSchema.Fields()
	for _, c := range dictionaryColumns {
		fields[c].Type = dictionaryType
	}
	return arrow.NewSchema(fields, nil)
}()

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
	schemaRelease
	message []byte
}

var schemaVersions = sync.OnceValues(func() ([]schemaVersion, error) {
	var vs []schemaVersion
	for _, r := range released {
		s := arrow.NewSchema(plainSchema.Fields()[:r.cols], nil)
		if r.dictionary {
			s = arrow.NewSchema(Schema.Fields()[:r.cols], nil)
		}
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(s))
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("write arrow schema message: %w", err)
		}
		// Close wrote the schema message and the 8-byte end-of-stream marker.
		vs = append(vs, schemaVersion{r, buf.Bytes()[:buf.Len()-8]})
	}
	return vs, nil
})

const continuation = 0xFFFFFFFF

// checkFraming walks the messages of an IPC stream: continuation marker, metadata length,
// flatbuffer metadata, body. It reads the body length from the metadata as the IPC reader
// would (and may panic on corrupt metadata, like the reader), and returns the messages as
// slices of data.
func checkFraming(data []byte) ([]message, schemaRelease, error) {
	vs, err := schemaVersions()
	if err != nil {
		return nil, schemaRelease{}, err
	}
	var schema schemaRelease
	for _, v := range vs {
		if bytes.HasPrefix(data, v.message) {
			schema = v.schemaRelease
		}
	}
	if schema.cols == 0 {
		return nil, schema, errors.New("the payload does not start with the schema message of " + SchemaName)
	}
	var msgs []message
	for rest := data; len(rest) > 0; {
		if len(rest) < 8 || binary.LittleEndian.Uint32(rest) != continuation {
			return nil, schemaRelease{}, fmt.Errorf("no message header at byte %d", len(data)-len(rest))
		}
		n := int32(binary.LittleEndian.Uint32(rest[4:]))
		rest = rest[8:]
		if n == 0 {
			return msgs, schema, nil // end of stream
		}
		if n < 4 || int(n) > len(rest) {
			return nil, schemaRelease{}, fmt.Errorf("message metadata of %d bytes at byte %d exceeds the payload", n, len(data)-len(rest))
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
			return nil, schemaRelease{}, fmt.Errorf("message body of %d bytes at byte %d exceeds the payload", body, len(data)-len(rest))
		}
		msgs = append(msgs, message{meta: meta, body: rest[:body]})
		rest = rest[body:]
	}
	return msgs, schema, nil
}

// message is one IPC message of a payload, in place.
type message struct{ meta, body []byte }
