package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
)

// A record is one message on disk:
//
//	magic   4 bytes  "TMS1"
//	length  4 bytes  little-endian uint32: the payload's length
//	crc     4 bytes  little-endian CRC-32C (Castagnoli) of the payload
//	payload          uvarint events, uvarint len(subject), subject, uvarint len(id), id, data
//
// The magic lets a reader find the next record after a damaged one; the checksum tells a
// whole record from a torn or corrupted one.
var magic = []byte("TMS1")

const headerSize = 12

// Bounds a record must respect. They are far above what the emitter writes (a NATS message
// is at most 64 MiB; subjects and message ids are short) and keep a damaged length or count
// from making the reader allocate or trust absurd values.
const (
	MaxRecordData = 64 << 20
	maxSubject    = 1024
	maxID         = 256
	maxEvents     = 1 << 24
	maxPayload    = MaxRecordData + maxSubject + maxID + 3*binary.MaxVarintLen64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of DecodeRecord. ErrTruncated means b ends inside the record: at the end of a
// segment, a torn last write.
var (
	ErrTruncated = errors.New("spool record is truncated")
	ErrCorrupt   = errors.New("spool record is corrupt")
)

// recordSize is the encoded size of m.
func recordSize(m *rawbatch.Message) int {
	return headerSize + payloadSize(m)
}

func payloadSize(m *rawbatch.Message) int {
	return uvarintLen(uint64(m.Events)) + uvarintLen(uint64(len(m.Subject))) + len(m.Subject) +
		uvarintLen(uint64(len(m.ID))) + len(m.ID) + len(m.Data)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// checkMessage reports why m cannot be stored as a record, if it cannot.
func checkMessage(m *rawbatch.Message) error {
	switch {
	case m.Events < 1 || m.Events > maxEvents:
		return fmt.Errorf("message of %d events: must hold 1 to %d", m.Events, maxEvents)
	case len(m.Subject) == 0 || len(m.Subject) > maxSubject:
		return fmt.Errorf("message subject of %d bytes: must be 1 to %d", len(m.Subject), maxSubject)
	case len(m.ID) == 0 || len(m.ID) > maxID:
		return fmt.Errorf("message id of %d bytes: must be 1 to %d", len(m.ID), maxID)
	case len(m.Data) == 0 || len(m.Data) > MaxRecordData:
		return fmt.Errorf("message data of %d bytes: must be 1 to %d", len(m.Data), MaxRecordData)
	}
	return nil
}

// AppendRecord appends the record of m to dst. m must pass checkMessage.
func AppendRecord(dst []byte, m *rawbatch.Message) []byte {
	dst = append(dst, magic...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(payloadSize(m)))
	crcAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	start := len(dst)
	dst = binary.AppendUvarint(dst, uint64(m.Events))
	dst = binary.AppendUvarint(dst, uint64(len(m.Subject)))
	dst = append(dst, m.Subject...)
	dst = binary.AppendUvarint(dst, uint64(len(m.ID)))
	dst = append(dst, m.ID...)
	dst = append(dst, m.Data...)
	binary.LittleEndian.PutUint32(dst[crcAt:], crc32.Checksum(dst[start:], castagnoli))
	return dst
}

// DecodeRecord decodes the record at the start of b and returns its message and its length.
// The message's Data aliases b. The error wraps ErrTruncated when b ends before the record
// does, ErrCorrupt for anything else that is wrong.
func DecodeRecord(b []byte) (rawbatch.Message, int, error) {
	var m rawbatch.Message
	if len(b) < headerSize {
		if !bytes.HasPrefix(magic, b[:min(len(b), len(magic))]) {
			return m, 0, fmt.Errorf("%w: no record magic", ErrCorrupt)
		}
		return m, 0, fmt.Errorf("%w: %d bytes, less than a record header", ErrTruncated, len(b))
	}
	if !bytes.Equal(b[:4], magic) {
		return m, 0, fmt.Errorf("%w: no record magic", ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(b[4:8])
	if n > maxPayload {
		return m, 0, fmt.Errorf("%w: payload length %d exceeds %d", ErrCorrupt, n, maxPayload)
	}
	end := headerSize + int(n)
	if len(b) < end {
		return m, 0, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), end)
	}
	payload := b[headerSize:end]
	if got, want := crc32.Checksum(payload, castagnoli), binary.LittleEndian.Uint32(b[8:12]); got != want {
		return m, 0, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	r := payloadReader{b: payload}
	events := r.uvarint()
	subject := r.bytes(maxSubject)
	id := r.bytes(maxID)
	if r.err != nil {
		return m, 0, fmt.Errorf("%w: %w", ErrCorrupt, r.err)
	}
	m = rawbatch.Message{
		Subject: string(subject),
		ID:      string(id),
		Data:    r.b,
	}
	if events > maxEvents {
		return rawbatch.Message{}, 0, fmt.Errorf("%w: %d events", ErrCorrupt, events)
	}
	m.Events = int(events)
	if err := checkMessage(&m); err != nil {
		return rawbatch.Message{}, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return m, end, nil
}

// payloadReader reads a record payload; the first error sticks.
type payloadReader struct {
	b   []byte
	err error
}

func (r *payloadReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) bytes(max int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(r.b)) {
		r.err = fmt.Errorf("field length %d exceeds %d or the %d bytes left", n, max, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// Damage describes what a reader skipped in a segment.
type Damage struct {
	// Regions counts the runs of bytes that are not whole, valid records.
	Regions int
	// Bytes is their total length.
	Bytes int
}

// DecodeSegment decodes every valid record of a segment's bytes, in order. After a damaged
// record it resumes at the next record magic, so one bad record costs only itself; a torn
// last record is one damaged region. The messages' Data alias b.
func DecodeSegment(b []byte) ([]rawbatch.Message, Damage) {
	var msgs []rawbatch.Message
	var d Damage
	for off := 0; off < len(b); {
		m, n, err := DecodeRecord(b[off:])
		if err == nil {
			msgs = append(msgs, m)
			off += n
			continue
		}
		d.Regions++
		next := bytes.Index(b[off+1:], magic)
		if next < 0 {
			d.Bytes += len(b) - off
			break
		}
		d.Bytes += next + 1
		off += next + 1
	}
	return msgs, d
}
