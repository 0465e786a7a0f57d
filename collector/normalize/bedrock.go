package normalize

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// bedrockUsage is the usage of Converse and of ConverseStream's metadata event. inputTokens
// excludes cache reads and writes (totalTokens = input + output + cacheRead + cacheWrite), so
// the v1 input is the sum.
type bedrockUsage struct {
	InputTokens           int64 `json:"inputTokens"`
	OutputTokens          int64 `json:"outputTokens"`
	CacheReadInputTokens  int64 `json:"cacheReadInputTokens"`
	CacheWriteInputTokens int64 `json:"cacheWriteInputTokens"`
}

// bedrockBody is a Converse response, or the payload of ConverseStream's metadata event.
type bedrockBody struct {
	Usage   *bedrockUsage `json:"usage"`
	Metrics *struct {
		LatencyMS int64 `json:"latencyMs"`
	} `json:"metrics"`
	StopReason string `json:"stopReason"`
}

func newBedrock() event.Usage {
	return event.Usage{Provider: ProviderBedrock, Operation: OperationChat}
}

func bedrockFinish(u *event.Usage, b *bedrockBody) error {
	r := b.Usage
	input, err := sum(count{"inputTokens", r.InputTokens}, count{"cacheReadInputTokens", r.CacheReadInputTokens},
		count{"cacheWriteInputTokens", r.CacheWriteInputTokens})
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	if err := nonNegative(count{"outputTokens", r.OutputTokens}); err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	u.Usage = event.Tokens{Input: input, Output: r.OutputTokens, CachedInput: r.CacheReadInputTokens, CacheWrite: r.CacheWriteInputTokens}
	if b.Metrics != nil && b.Metrics.LatencyMS >= 0 && b.Metrics.LatencyMS <= event.MaxLatency {
		u.LatencyMS = b.Metrics.LatencyMS
	}
	return nil
}

func bedrockResponse(body []byte) (event.Usage, error) {
	var b bedrockBody
	if err := json.Unmarshal(body, &b); err != nil {
		return event.Usage{}, fmt.Errorf("decode Converse response: %w", err)
	}
	if b.Usage == nil {
		return event.Usage{}, ErrNoUsage
	}
	u := newBedrock()
	if err := bedrockFinish(&u, &b); err != nil {
		return event.Usage{}, err
	}
	return u, nil
}

// AWS event stream framing (application/vnd.amazon.eventstream): a 12-byte prelude (total
// length, headers length, CRC-32 of those 8 bytes), the headers, the payload, and a CRC-32 of
// everything before it. Lengths are big-endian.
const (
	esPrelude    = 12
	esMinMessage = esPrelude + 4
	// esMaxMessage is the service's own limit on one message (16 MiB); esMaxHeaders likewise.
	esMaxMessage = 16 << 20
	esMaxHeaders = 128 << 10
)

// esMessage is one decoded event-stream message: the headers this package reads, and the
// payload.
type esMessage struct {
	messageType, eventType, exceptionType string
	payload                               []byte
}

// errShortFrame means the buffer does not hold a whole message yet.
var errShortFrame = errors.New("incomplete event stream message")

// decodeESMessage decodes the message at the start of b and returns it with its length. It
// returns errShortFrame when b holds only part of it. The payload aliases b.
func decodeESMessage(b []byte) (esMessage, int, error) {
	if len(b) < esPrelude {
		return esMessage{}, 0, errShortFrame
	}
	total := binary.BigEndian.Uint32(b[0:4])
	hlen := binary.BigEndian.Uint32(b[4:8])
	if crc32.ChecksumIEEE(b[0:8]) != binary.BigEndian.Uint32(b[8:12]) {
		return esMessage{}, 0, errors.New("event stream prelude checksum mismatch")
	}
	if total < esMinMessage || total > esMaxMessage {
		return esMessage{}, 0, fmt.Errorf("event stream message length %d is outside [%d, %d]", total, esMinMessage, esMaxMessage)
	}
	if hlen > esMaxHeaders || hlen > total-esMinMessage {
		return esMessage{}, 0, fmt.Errorf("event stream headers length %d does not fit a message of %d bytes", hlen, total)
	}
	if uint32(len(b)) < total {
		return esMessage{}, 0, errShortFrame
	}
	msg := b[:total]
	if crc32.ChecksumIEEE(msg[:total-4]) != binary.BigEndian.Uint32(msg[total-4:]) {
		return esMessage{}, 0, errors.New("event stream message checksum mismatch")
	}
	m := esMessage{payload: msg[esPrelude+hlen : total-4]}
	h := msg[esPrelude : esPrelude+hlen]
	for len(h) > 0 {
		nlen := int(h[0])
		if len(h) < 1+nlen+1 {
			return esMessage{}, 0, errors.New("event stream header is truncated")
		}
		name := string(h[1 : 1+nlen])
		typ := h[1+nlen]
		h = h[2+nlen:]
		var size int
		switch typ {
		case 0, 1: // true, false
		case 2:
			size = 1
		case 3:
			size = 2
		case 4:
			size = 4
		case 5, 8: // long, timestamp
			size = 8
		case 9: // uuid
			size = 16
		case 6, 7: // bytes, string: a 2-byte length first
			if len(h) < 2 {
				return esMessage{}, 0, errors.New("event stream header value is truncated")
			}
			size = 2 + int(binary.BigEndian.Uint16(h))
		default:
			return esMessage{}, 0, fmt.Errorf("event stream header %q has unknown type %d", name, typ)
		}
		if len(h) < size {
			return esMessage{}, 0, errors.New("event stream header value is truncated")
		}
		if typ == 7 {
			v := string(h[2:size])
			switch name {
			case ":message-type":
				m.messageType = v
			case ":event-type":
				m.eventType = v
			case ":exception-type":
				m.exceptionType = v
			}
		}
		h = h[size:]
	}
	return m, int(total), nil
}
