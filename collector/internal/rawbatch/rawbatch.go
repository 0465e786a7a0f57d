// Package rawbatch turns rows into USAGE_RAW messages and publishes them. The collector and
// the emitter share it so that both produce byte-identical messages for the same rows, with
// the same message ids.
package rawbatch

import (
	"context"
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Message is one record batch of one partition, encoded once. Its ID is derived from Data
// alone, so publishing the same Message again — a retry — carries the same Nats-Msg-Id and is
// stored once by JetStream within the stream's duplicate window.
type Message struct {
	Subject string
	Data    []byte
	ID      string
	// Events is the number of rows in Data.
	Events int
}

// headerRoom is kept free below the server's max payload for the subject, the reply subject
// and the headers, which count towards the limit too.
const headerRoom = 1024

// Encode encodes the rows of partition p as one message, or — when that would exceed
// maxPayload — as several, splitting the rows in halves. Splitting depends only on the rows,
// so the same rows always give the same messages.
func Encode(p int, rows []batch.Row, maxPayload int64) ([]Message, error) {
	msgs, _, err := AppendEncoded(nil, nil, p, rows, maxPayload)
	return msgs, err
}

// AppendEncoded is Encode appending the messages to dst and their data to buf, which it
// returns with them: a caller can encode the messages of many partitions into one buffer and
// use it again once they are published. The messages' Data are slices of buf's array (or of
// the arrays it grew into), so buf must not be written to while they are in use.
func AppendEncoded(dst []Message, buf []byte, p int, rows []batch.Row, maxPayload int64) ([]Message, []byte, error) {
	start := len(buf)
	out, err := batch.AppendCompressed(buf, rows)
	if err != nil {
		return dst, buf, fmt.Errorf("encode %d rows of partition %d: %w", len(rows), p, err)
	}
	buf = out
	data := buf[start:len(buf):len(buf)]
	if int64(len(data))+headerRoom <= maxPayload {
		return append(dst, Message{
			Subject: stream.RawSubject(p),
			Data:    data,
			ID:      MsgID(data),
			Events:  len(rows),
		}), buf, nil
	}
	buf = buf[:start] // too large: split, encoding over it
	if len(rows) == 1 {
		return dst, buf, fmt.Errorf("event %q encodes to %d bytes, more than the NATS max payload of %d bytes",
			rows[0].ID, len(data), maxPayload)
	}
	half := len(rows) / 2
	if dst, buf, err = AppendEncoded(dst, buf, p, rows[:half], maxPayload); err != nil {
		return dst, buf, err
	}
	return AppendEncoded(dst, buf, p, rows[half:], maxPayload)
}

// defaultMaxPayload is the NATS server's default max_payload.
const defaultMaxPayload = 1 << 20

// MaxPayload is the largest message nc's server takes. A connection that has not reached a
// server yet reports 0; the server default stands in until it has.
func MaxPayload(nc *nats.Conn) int64 {
	if mp := nc.MaxPayload(); mp > 0 {
		return mp
	}
	return defaultMaxPayload
}

// MsgID is the Nats-Msg-Id of a payload: the hex of its xxhash64.
func MsgID(data []byte) string {
	return strconv.FormatUint(xxhash.Sum64(data), 16)
}

// NatsMsg builds the message to publish. It is built anew for every attempt because the
// client library keeps a reference to a message until it is acknowledged.
func (m *Message) NatsMsg() *nats.Msg {
	h := make(nats.Header, 2)
	h.Set(stream.HeaderSchema, batch.SchemaName)
	h.Set(jetstream.MsgIDHeader, m.ID)
	return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}
}

// Publish publishes every message asynchronously, then waits until JetStream acknowledged
// each of them or ctx ends. It returns one error per message, nil for those that are stored
// (a duplicate of a stored message counts as stored).
func Publish(ctx context.Context, js jetstream.JetStream, msgs []Message) []error {
	errs := make([]error, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i := range msgs {
		f, err := js.PublishMsgAsync(msgs[i].NatsMsg())
		if err != nil {
			errs[i] = fmt.Errorf("publish %d events to %s: %w", msgs[i].Events, msgs[i].Subject, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("publish %d events to %s: %w", msgs[i].Events, msgs[i].Subject, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("wait for JetStream to acknowledge %d events on %s: %w",
				msgs[i].Events, msgs[i].Subject, context.Cause(ctx))
		}
	}
	return errs
}
