package batch

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/ipc"
)

// AppendEncoded is Encode appending the stream to dst, so that a caller can encode many
// batches into one buffer and use it again (the collector does, once JetStream has stored
// them): encoding a 1,000-event body allocated ~400 KB of streams for every request.
func AppendEncoded(dst []byte, rows []Row) ([]byte, error) {
	// The record only lives until the writer has copied it: its buffers come from a
	// recycled scratch, which encoding 1,000 rows otherwise allocated ~350 KB of.
	sc := scratches.Get().(*scratch)
	defer scratches.Put(sc)
	defer sc.reset()
	rec := record(rows, sc)
	defer rec.Release()
	// Sized up front: growing the buffer while the IPC writer copies columns into it cost as
	// much as building the record.
	buf := bytes.NewBuffer(dst)
	buf.Grow(bodySize(rec) + 16<<10)
	if err := sc.stream.write(buf, rec); err != nil {
		return nil, fmt.Errorf("write arrow record of %d rows: %w", len(rows), err)
	}
	return buf.Bytes(), nil
}

// stream writes IPC streams of one record batch each: the schema message, the record's
// message and the end-of-stream marker. An ipc.Writer builds its schema message (a
// flatbuffer of every field, ~100 allocations) before its first record and never again, so
// one writer serves every stream, its output switched from buffer to buffer; the schema
// message of the streams after its first is the one it wrote (schemaVersions holds the same
// bytes). TestAppendEncodedStreams pins the bytes to those of a writer of their own.
type stream struct {
	w       *ipc.Writer
	to      *bytes.Buffer // where w writes
	started bool          // w has written its schema message
}

func (s *stream) Write(p []byte) (int, error) { return s.to.Write(p) }

func (s *stream) write(to *bytes.Buffer, rec arrow.Record) error {
	if s.w == nil {
		s.w, s.started = ipc.NewWriter(s, ipc.WithSchema(Schema)), false
	}
	s.to = to
	defer func() { s.to = nil }()
	if s.started {
		vs, err := schemaVersions()
		if err != nil {
			return err
		}
		to.Write(vs[len(vs)-1].message)
	}
	if err := s.w.Write(rec); err != nil {
		s.w = nil // its state is unknown: the next stream starts a writer afresh
		return err
	}
	s.started = true
	to.Write(endOfStream[:])
	return nil
}

// endOfStream ends an IPC stream: a continuation marker and a zero metadata length.
var endOfStream = [8]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// scratch is what AppendEncoded keeps from stream to stream: its IPC writer, and the chunk
// it hands out zeroed buffers for the columns of a record from, which reset makes available
// again: only once the record is released, since its columns are views of the chunk. A nil
// *scratch allocates every buffer.
type scratch struct {
	stream stream
	chunk  []byte
	used   int
	// need is what the buffers handed out since the last reset took, across chunks: reset
	// makes a chunk that large when the last one was too small.
	need int
}

func (sc *scratch) bytes(n int) []byte {
	if sc == nil {
		return make([]byte, n)
	}
	size := (n + 7) &^ 7 // every buffer 8-byte aligned, for the int64 views
	sc.need += size
	if sc.used+size > len(sc.chunk) {
		// The rest of the chunk is left unused, and its start to the buffers already out.
		sc.chunk = make([]byte, max(64<<10, 2*size))
		sc.used = 0
	}
	b := sc.chunk[sc.used : sc.used+n : sc.used+n]
	sc.used += size
	clear(b)
	return b
}

func (sc *scratch) int64s(n int) []int64 { return arrow.Int64Traits.CastFromBytes(sc.bytes(8 * n)) }
func (sc *scratch) int32s(n int) []int32 { return arrow.Int32Traits.CastFromBytes(sc.bytes(4 * n)) }

func (sc *scratch) reset() {
	if sc.need > len(sc.chunk) {
		sc.chunk = make([]byte, sc.need)
	}
	sc.used, sc.need = 0, 0
}
