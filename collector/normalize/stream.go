package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// maxEvent bounds one server-sent event or event-stream message that Stream buffers. Usage
// chunks are a few hundred bytes; larger events are content, which Stream skips unread.
const maxEvent = 1 << 20

// Stream reads the usage of one streamed response as its bytes pass by: write every byte of
// the body, in order, then call Usage. It never fails a write, so it can sit in a tee without
// ever breaking the stream it watches; what it could not read is reported by Usage. It holds
// at most one event in memory. A Stream is not safe for concurrent use.
type Stream struct {
	format Format
	u      event.Usage

	// line is the partial line carried between writes; skipping is set while the rest of
	// an over-long line is discarded.
	line     []byte
	skipping bool
	// name and data are the current server-sent event's fields; oversized is set when its
	// data grew past maxEvent.
	name      []byte
	data      []byte
	hasData   bool
	oversized bool

	// frame buffers a partial AWS event-stream message (BedrockConverse).
	frame []byte
	// broken is set when the event stream cannot be framed any more.
	broken bool

	// Per-format usage state, finished by Usage.
	openAIChat *openAIChatUsage
	anthropic  *anthropicUsage
	gemini     *geminiUsage
	bedrock    *bedrockBody
	responses  bool

	// err is the first error met; skipped counts events that could not be read.
	err     error
	skipped int
	// text counts the bytes of output text streamed (streamtext.go).
	text int64
}

// NewStream starts reading a streamed response of format f.
func NewStream(f Format) *Stream {
	s := &Stream{format: f}
	switch f {
	case OpenAIChat:
		s.u = newOpenAIChat()
	case OpenAIResponses:
		s.u = newOpenAIResponses()
	case Anthropic:
		s.u = newAnthropic()
	case Gemini:
		s.u = newGemini()
	case BedrockConverse:
		s.u = newBedrock()
	default:
		s.err = fmt.Errorf("unknown response format %d", int(f))
	}
	return s
}

// Write takes the next bytes of the stream. It always returns len(p), nil.
func (s *Stream) Write(p []byte) (int, error) {
	if s.format == BedrockConverse {
		s.writeFrames(p)
	} else {
		s.writeSSE(p)
	}
	return len(p), nil
}

// Usage returns the usage the stream reported, once the whole stream was written. It returns
// an error wrapping ErrNoUsage when the stream ended before its usage event, and the first
// decoding error when the usage event could not be read.
func (s *Stream) Usage() (event.Usage, error) {
	// A final event not followed by a blank line is dispatched too: some servers end the
	// stream right after the last data line.
	if s.format != BedrockConverse {
		if len(s.line) > 0 && !s.skipping {
			s.field(s.line)
			s.line = s.line[:0]
		}
		s.dispatch()
	}
	u := s.u
	var err error
	switch {
	case s.openAIChat != nil:
		err = s.openAIChat.finish(&u)
	case s.anthropic != nil:
		err = anthropicFinish(&u, s.anthropic)
	case s.gemini != nil:
		err = geminiFinish(&u, s.gemini)
	case s.bedrock != nil:
		err = bedrockFinish(&u, s.bedrock)
	case s.responses:
	case s.err != nil:
		return event.Usage{}, fmt.Errorf("read %s stream: %w", s.format, s.err)
	default:
		return event.Usage{}, fmt.Errorf("read %s stream (%d events unreadable): %w", s.format, s.skipped, ErrNoUsage)
	}
	if err != nil {
		return event.Usage{}, fmt.Errorf("read %s stream: usage: %w", s.format, err)
	}
	return u, nil
}

// writeSSE splits text/event-stream bytes into lines. Lines end in "\n" or "\r\n"; a lone
// "\r" line ending, allowed by the specification but sent by none of the providers, is not
// recognized.
func (s *Stream) writeSSE(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if !s.skipping {
				if len(s.line)+len(p) > maxEvent {
					s.skipping, s.line = true, s.line[:0]
				} else {
					s.line = append(s.line, p...)
				}
			}
			return
		}
		chunk := p[:i]
		p = p[i+1:]
		if s.skipping {
			s.skipping = false
			s.oversized = true // the event this line belonged to is incomplete
			continue
		}
		line := chunk
		if len(s.line) > 0 {
			if len(s.line)+len(chunk) > maxEvent {
				s.line = s.line[:0]
				s.oversized = true
				continue
			}
			s.line = append(s.line, chunk...)
			line = s.line
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			s.dispatch()
		} else {
			s.field(line)
		}
		s.line = s.line[:0]
	}
}

// field takes one non-empty line of an event.
func (s *Stream) field(line []byte) {
	name, value, _ := bytes.Cut(line, []byte{':'})
	value = bytes.TrimPrefix(value, []byte{' '})
	switch string(name) {
	case "data":
		if s.oversized {
			return
		}
		if len(s.data)+1+len(value) > maxEvent {
			s.oversized = true
			return
		}
		if s.hasData {
			s.data = append(s.data, '\n')
		}
		s.data, s.hasData = append(s.data, value...), true
	case "event":
		s.name = append(s.name[:0], value...)
	}
	// Comments (":…"), id and retry carry no usage.
}

// dispatch hands the current event to the format's reader and starts a new one.
func (s *Stream) dispatch() {
	defer func() {
		s.name, s.data, s.hasData, s.oversized = s.name[:0], s.data[:0], false, false
	}()
	if s.oversized {
		s.skipped++
		return
	}
	if !s.hasData {
		return
	}
	if err := s.event(string(s.name), s.data); err != nil {
		s.skipped++
		if s.err == nil {
			s.err = err
		}
	}
}

// event reads one server-sent event.
func (s *Stream) event(name string, data []byte) error {
	switch s.format {
	case OpenAIChat:
		if bytes.Equal(data, []byte("[DONE]")) {
			return nil
		}
		var c openAIChat
		if err := json.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("decode chat.completion.chunk: %w", err)
		}
		c.merge(&s.u)
		s.chatText(&c)
		if c.Usage != nil {
			s.openAIChat = c.Usage
		}
	case OpenAIResponses:
		if s.responsesText(name, data) {
			return nil
		}
		if !bytes.Contains(data, []byte(`"response"`)) {
			return nil // output deltas; only the response.* lifecycle events matter
		}
		var e openAIResponsesEvent
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("decode %s event: %w", clip(name), err)
		}
		if e.Response == nil {
			return nil
		}
		if err := e.Response.merge(&s.u); err != nil {
			return err
		}
		if e.Response.Usage != nil {
			s.responses = true
		}
	case Anthropic:
		switch name {
		case "", "message_start", "message_delta", "error":
		case "content_block_delta":
			s.anthropicText(data)
			return nil
		default:
			return nil // content blocks and pings
		}
		var e anthropicEvent
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("decode %s event: %w", clip(name), err)
		}
		switch e.Type {
		case "message_start":
			if e.Message == nil {
				return errors.New("message_start without a message")
			}
			s.u.ResponseID, s.u.Model = e.Message.ID, e.Message.Model
			if e.Message.Usage != nil {
				s.anthropic = e.Message.Usage
			}
		case "message_delta":
			if e.Usage != nil {
				if s.anthropic == nil {
					s.anthropic = &anthropicUsage{}
				}
				s.anthropic.update(e.Usage)
			}
		case "error":
			// The call failed mid-stream; what message_start reported is still billed.
			s.u.Status = "error"
			if e.Error != nil && e.Error.Type != "" {
				s.u.Status = clip(e.Error.Type)
			}
		}
	case Gemini:
		var r geminiResponseBody
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("decode GenerateContentResponse chunk: %w", err)
		}
		r.merge(&s.u, &s.gemini)
	}
	return nil
}

// writeFrames reads AWS event-stream messages. A message that cannot be framed (a bad length
// or checksum) ends the reading: there is no way to find the next message boundary.
func (s *Stream) writeFrames(p []byte) {
	if s.broken {
		return
	}
	b := p
	if len(s.frame) > 0 {
		s.frame = append(s.frame, p...)
		b = s.frame
	}
	for {
		m, n, err := decodeESMessage(b)
		if errors.Is(err, errShortFrame) {
			break
		}
		if err != nil {
			s.broken, s.frame = true, nil
			if s.err == nil {
				s.err = err
			}
			return
		}
		b = b[n:]
		if err := s.frameEvent(m); err != nil {
			s.skipped++
			if s.err == nil {
				s.err = err
			}
		}
	}
	// Keep the partial message; copy when it aliases p, which the caller reuses.
	s.frame = append(s.frame[:0:0], b...)
	if len(s.frame) == 0 {
		s.frame = nil
	}
}

func (s *Stream) frameEvent(m esMessage) error {
	switch {
	case m.messageType == "exception" || m.messageType == "error":
		s.u.Status = "error"
		if m.exceptionType != "" {
			s.u.Status = clip(m.exceptionType)
		}
	case m.eventType == "metadata":
		var b bedrockBody
		if err := json.Unmarshal(m.payload, &b); err != nil {
			return fmt.Errorf("decode metadata event: %w", err)
		}
		if b.Usage != nil {
			s.bedrock = &b
		}
	}
	return nil
}
