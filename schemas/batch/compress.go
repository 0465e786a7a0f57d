package batch

import (
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
)

// A payload is either an Arrow IPC stream (Encode) or that stream compressed:
// compressedPrefix, then the stream as one S2 block (AppendCompressed). A batch of realistic
// events is a quarter of its size compressed — about 64–74 bytes an event instead of 260–300 —
// and nats-server copies, stores, writes and reads back every message several times
// (USAGE_RAW, USAGE_ENRICHED, both copies in USAGE_HISTORY), so the server's CPU, the
// streams' disk and memory, and the history's reach all follow the compressed size. Decode
// reads both, so messages written before, or by an emitter of an older release, still decode.

// compressedPrefix starts a compressed payload. An IPC stream starts with 0xFFFFFFFF.
const compressedPrefix = "tmS2"

// maxDecompressed bounds what a compressed payload may claim to hold: far above any message
// the server takes (1 MiB by default, 64 MiB at most) times S2's usual ratio, far below what
// would hurt, so a corrupt or hostile length is an error, not an allocation.
const maxDecompressed = 256 << 20

// AppendCompressed appends the rows, encoded as Encode does and compressed, to buf.
func AppendCompressed(buf []byte, rows []Row) ([]byte, error) {
	sp := streamPool.Get().(*[]byte)
	defer streamPool.Put(sp)
	stream, err := AppendEncoded((*sp)[:0], rows)
	if err != nil {
		return buf, err
	}
	*sp = stream
	buf = append(buf, compressedPrefix...)
	n := len(buf)
	buf = growTo(buf, n+s2.MaxEncodedLen(len(stream)))
	out := s2.Encode(buf[n:cap(buf)], stream)
	return buf[:n+len(out)], nil
}

// Compressed reports whether data is a compressed payload.
func Compressed(data []byte) bool {
	return len(data) >= len(compressedPrefix) && string(data[:len(compressedPrefix)]) == compressedPrefix
}

// streamPool holds the buffers payloads are encoded into before compression, and compressed
// payloads are decompressed into before decoding; Decode copies strings out, so no row points
// into one.
var streamPool = sync.Pool{New: func() any { return new([]byte) }}

// decompressed returns the IPC stream of the compressed payload data, in a buffer from
// streamPool that the caller puts back once it is done with the stream.
func decompressed(data []byte) (*[]byte, []byte, error) {
	block := data[len(compressedPrefix):]
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, nil, fmt.Errorf("compressed payload: %w", err)
	}
	if n > maxDecompressed {
		return nil, nil, fmt.Errorf("compressed payload claims %d bytes, more than %d", n, maxDecompressed)
	}
	sp := streamPool.Get().(*[]byte)
	*sp = growTo((*sp)[:0], n)
	stream, err := s2.Decode((*sp)[:n], block)
	if err != nil {
		streamPool.Put(sp)
		return nil, nil, fmt.Errorf("compressed payload: %w", err)
	}
	if len(stream) != n {
		streamPool.Put(sp)
		return nil, nil, errors.New("compressed payload: decoded length differs from its header")
	}
	return sp, stream, nil
}

// growTo returns b with a capacity of at least n, its contents kept.
func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b
	}
	return append(b[:cap(b)], make([]byte, n-cap(b))...)[:len(b)]
}
