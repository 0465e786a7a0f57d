package event

import (
	"bytes"
	// encoding/json's Valid, because goccy/go-json's runs its stream decoder, which panics on
	// some malformed input (testdata/fuzz/FuzzDecode/2abef14d576efba2).
	stdjson "encoding/json"
	"errors"
	"fmt"
	"mime"
	"time"

	json "github.com/goccy/go-json"
)

// Content types accepted by Decode.
const (
	ContentJSON           = "application/json"
	ContentNDJSON         = "application/x-ndjson"
	ContentCloudEvent     = "application/cloudevents+json"
	ContentCloudEventList = "application/cloudevents-batch+json"
	// CloudEventType is the CloudEvents type of a usage event.
	CloudEventType = "ai.usage.v1"
)

// ErrUnreadable means nothing in a body could be read as events (the HTTP API answers 400).
var ErrUnreadable = errors.New("body holds no readable events")

// ErrTooManyEvents means a body holds more events than the batch limit (HTTP 413).
var ErrTooManyEvents = errors.New("too many events in one body")

// Rejection names one event of a batch that was not accepted, and why.
type Rejection struct {
	Index int    `json:"index"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error"`
}

// Batch is the outcome of decoding one body: the valid, normalized events in body order, and
// a rejection for every element that could not be decoded or failed validation.
type Batch struct {
	Events   []Usage
	Rejected []Rejection
}

// Decode reads a body of usage events: a JSON array or NDJSON (content type application/json
// or application/x-ndjson; a JSON body starting with '[' is an array, otherwise one event per
// line), a structured CloudEvent, or a CloudEvents batch. Each element is decoded, normalized
// (received is its default time) and validated on its own, so one bad element rejects only
// itself. Decode returns an error wrapping ErrUnreadable when the body as a whole cannot be
// read, and ErrTooManyEvents when it holds more than maxEvents elements.
func Decode(body []byte, contentType string, received time.Time, lim Limits, maxEvents int) (Batch, error) {
	return decode(nil, nil, body, contentType, received, lim, maxEvents)
}

// A Decoder decodes bodies as Decode does, into memory it uses again from one body to the
// next: the array of the events (~300 bytes an event) and the tags and units maps it makes
// for them (~330 bytes an event with tags). The collector keeps Decoders in a pool.
//
// The batches Decode returns are the caller's until Recycle, which empties their events and
// every map Decode made for them, wherever they are: the caller must keep none of them, nor
// hand them on, past Recycle. Strings are not recycled; they stay valid.
type Decoder struct {
	events []Usage // the events of the last batch, as Decode returned them
	maps   maps
}

// Decode decodes body as Decode does; call Recycle once done with the batch.
func (d *Decoder) Decode(body []byte, contentType string, received time.Time, lim Limits, maxEvents int) (Batch, error) {
	room := d.events
	if len(room) > 0 {
		room = nil // the last batch is still the caller's: Recycle was not called
	}
	b, err := decode(room, &d.maps, body, contentType, received, lim, maxEvents)
	if b.Events != nil {
		d.events = b.Events
	}
	return b, err
}

// Recycle takes back the batches Decode returned since the last Recycle: the array of the
// last one's events, and the maps of all.
func (d *Decoder) Recycle() {
	clear(d.events)
	d.events = d.events[:0]
	d.maps.recycle()
}

// decode is Decode holding the events in room's array when it is large enough, rather than
// in a new one, and making their maps with m (nil: with make).
func decode(room []Usage, m *maps, body []byte, contentType string, received time.Time, lim Limits, maxEvents int) (Batch, error) {
	mt := ContentJSON
	if contentType != "" {
		parsed, _, err := mime.ParseMediaType(contentType)
		// A malformed parameter (a stray "; charset") does not hide the media type; refusing
		// the body for it would lose events over a cosmetic client bug.
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return Batch{}, fmt.Errorf("%w: content type %q: %v", ErrUnreadable, contentType, err)
		}
		mt = parsed
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return Batch{}, fmt.Errorf("%w: the body is empty", ErrUnreadable)
	}
	d := decoder{received: received, lim: lim, room: room, maps: m}
	switch mt {
	case ContentJSON, "text/plain":
		switch {
		case body[0] == '[':
			return d.array(body, maxEvents, d.plain)
		case body[0] == '{' && stdjson.Valid(body):
			// A single event, possibly pretty-printed over several lines, which the NDJSON
			// reader would see as a series of broken lines. NDJSON of two or more events is
			// not one valid JSON value, so it still goes to the line reader.
			d.out.Events = d.events(1)
			_ = d.plain(0, body)
			return d.out, nil
		}
		return d.lines(body, maxEvents)
	case ContentNDJSON, "application/jsonl", "application/x-jsonlines":
		return d.lines(body, maxEvents)
	case ContentCloudEvent:
		// A body that is not even a JSON object holds nothing readable (400), like an NDJSON
		// body of garbage; a CloudEvent that can be read but is wrong is a rejection (202).
		if body[0] != '{' || !stdjson.Valid(body) {
			return Batch{}, fmt.Errorf("%w: not a JSON CloudEvent object", ErrUnreadable)
		}
		_ = d.cloudEvent(0, body)
		return d.out, nil
	case ContentCloudEventList:
		return d.array(body, maxEvents, d.cloudEvent)
	default:
		return Batch{}, fmt.Errorf("%w: content type %q is not one of %s, %s, %s, %s",
			ErrUnreadable, mt, ContentJSON, ContentNDJSON, ContentCloudEvent, ContentCloudEventList)
	}
}

type decoder struct {
	received time.Time
	lim      Limits
	room     []Usage // see decode
	strs     strs    // the strings scanEvent makes
	maps     *maps   // the maps scanEvent makes
	out      Batch
	// syntax counts the elements that were not JSON objects at all.
	syntax int
}

// events is an empty slice with room for n events.
func (d *decoder) events(n int) []Usage {
	if cap(d.room) >= n {
		return d.room[:0]
	}
	return make([]Usage, 0, n)
}

func (d *decoder) array(body []byte, maxEvents int, element func(int, []byte) error) (Batch, error) {
	if n := ArrayLen(body); n > maxEvents {
		return Batch{}, fmt.Errorf("%w: %d events, the limit is %d", ErrTooManyEvents, n, maxEvents)
	}
	var raw []json.RawMessage
	if err := unmarshal(body, &raw); err != nil {
		return Batch{}, fmt.Errorf("%w: not a JSON array: %v", ErrUnreadable, err)
	}
	if len(raw) == 0 {
		return Batch{}, fmt.Errorf("%w: the array is empty", ErrUnreadable)
	}
	if len(raw) > maxEvents {
		return Batch{}, fmt.Errorf("%w: %d events, the limit is %d", ErrTooManyEvents, len(raw), maxEvents)
	}
	d.out.Events = d.events(len(raw))
	for i, r := range raw {
		_ = element(i, r)
	}
	return d.out, nil
}

func (d *decoder) lines(body []byte, maxEvents int) (Batch, error) {
	if n := bytes.Count(body, []byte{'\n'}) + 1; n > maxEvents {
		// Blank lines count here; an honest client is far from the limit anyway.
		return Batch{}, fmt.Errorf("%w: %d lines, the limit is %d", ErrTooManyEvents, n, maxEvents)
	}
	d.out.Events = d.events(bytes.Count(body, []byte{'\n'}) + 1)
	index := 0
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		_ = d.plain(index, line)
		index++
	}
	if index == 0 {
		return Batch{}, fmt.Errorf("%w: no lines", ErrUnreadable)
	}
	if d.syntax == index {
		return Batch{}, fmt.Errorf("%w: no line is a JSON object (line 0: %s)", ErrUnreadable, d.out.Rejected[0].Error)
	}
	return d.out, nil
}

// plain decodes one event object. The event is decoded in place, into the next element of
// d.out.Events, which is dropped when it is rejected.
func (d *decoder) plain(index int, data []byte) error {
	n := len(d.out.Events)
	d.out.Events = append(d.out.Events, Usage{})
	if err := d.decodeInto(&d.out.Events[n], index, data); err != nil {
		d.out.Events[n] = Usage{}
		d.out.Events = d.out.Events[:n]
		return err
	}
	return nil
}

func (d *decoder) decodeInto(u *Usage, index int, data []byte) error {
	if scanEvent(u, data, &d.strs, d.maps) {
		return d.accept(index, u)
	}
	*u = Usage{}
	if err := checkShape(data); err != nil {
		if !stdjson.Valid(data) { // encoding/json nests 10,000 deep at most
			d.syntax++
			return d.reject(index, "", "not a JSON event object: "+err.Error())
		}
		return d.reject(index, "", "not a usage event: "+err.Error())
	}
	if err := unmarshal(data, u); err != nil {
		// A well-formed object with a wrongly typed field ("input_tokens": "12") is a readable
		// event with a bad field, not garbage: it must not make a whole NDJSON body unreadable.
		if len(data) > 0 && data[0] == '{' && stdjson.Valid(data) {
			return d.reject(index, probeID(data), "not a usage event: "+err.Error())
		}
		d.syntax++
		return d.reject(index, probeID(data), "not a JSON event object: "+err.Error())
	}
	return d.accept(index, u)
}

// cloudEvent decodes one structured-mode CloudEvent whose data is a usage event. The
// CloudEvent's id and time stand in for the event's own when the data has none.
func (d *decoder) cloudEvent(index int, data []byte) error {
	var ce struct {
		SpecVersion     string          `json:"specversion"`
		Type            string          `json:"type"`
		Source          string          `json:"source"`
		ID              string          `json:"id"`
		Time            time.Time       `json:"time"`
		DataContentType string          `json:"datacontenttype"`
		Data            json.RawMessage `json:"data"`
	}
	if err := checkShape(data); err != nil {
		return d.reject(index, "", "not a CloudEvent object: "+err.Error())
	}
	if err := unmarshal(data, &ce); err != nil {
		return d.reject(index, "", "not a CloudEvent object: "+err.Error())
	}
	switch {
	case ce.SpecVersion != "1.0":
		return d.reject(index, ce.ID, fmt.Sprintf("specversion: %q is not 1.0", clip(ce.SpecVersion)))
	case ce.Type != CloudEventType:
		return d.reject(index, ce.ID, fmt.Sprintf("type: %q is not %s", clip(ce.Type), CloudEventType))
	case ce.DataContentType != "" && ce.DataContentType != ContentJSON:
		return d.reject(index, ce.ID, fmt.Sprintf("datacontenttype: %q is not %s", clip(ce.DataContentType), ContentJSON))
	case len(ce.Data) == 0 || ce.Data[0] != '{':
		return d.reject(index, ce.ID, "data: must be a JSON object holding the usage event")
	}
	var u Usage
	if err := unmarshal(ce.Data, &u); err != nil {
		// Name the event as accept would: by the data's own id, else the CloudEvent's.
		id := probeID(ce.Data)
		if id == "" {
			id = ce.ID
		}
		return d.reject(index, id, "data: not a usage event: "+err.Error())
	}
	if u.ID == "" {
		u.ID = ce.ID
	}
	if u.Time.IsZero() {
		u.Time = ce.Time
	}
	if err := d.accept(index, &u); err != nil {
		return err
	}
	d.out.Events = append(d.out.Events, u)
	return nil
}

// accept normalizes and validates a decoded event, and rejects it when it is not valid.
func (d *decoder) accept(index int, u *Usage) error {
	u.Normalize(d.received)
	if err := u.Validate(d.received, d.lim); err != nil {
		return d.reject(index, u.ID, err.Error())
	}
	return nil
}

func (d *decoder) reject(index int, id, msg string) error {
	if len(id) > d.lim.MaxID {
		id = clip(id)
	}
	d.out.Rejected = append(d.out.Rejected, Rejection{Index: index, ID: id, Error: msg})
	return errors.New(msg)
}

// probeID recovers the id of an event that failed to decode, so the rejection can name it.
func probeID(data []byte) string {
	var p struct {
		ID string `json:"id"`
	}
	if unmarshal(data, &p) != nil {
		return ""
	}
	return p.ID
}

// unmarshal is goccy/go-json's Unmarshal (about five times faster than encoding/json here)
// made safe for hostile input: on some truncated documents, such as `{"\`, it indexes past
// the end of its buffer and panics. Go's bounds check stops the read, so the panic is turned
// into a decoding error. Found by FuzzDecode.
func unmarshal(data []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.New("malformed JSON")
		}
	}()
	return json.Unmarshal(data, v)
}

// ArrayLen counts the elements of the JSON array that body holds, without decoding them, so
// that a body of millions of tiny elements ("[0,0,0,…]": 16 MiB of it used to take a GB to
// unmarshal) is refused before they are built. The count is exact for a well-formed array;
// for a malformed one it means nothing, and decoding it fails anyway.
func ArrayLen(body []byte) int {
	depth, commas := 0, 0
	inString, element := false, false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth == 1 {
				continue // the array itself
			}
		case ']', '}':
			depth--
			if depth == 0 {
				continue
			}
		case ',':
			if depth == 1 {
				commas++
			}
		}
		if depth >= 1 {
			element = true
		}
	}
	if !element {
		return 0
	}
	return commas + 1
}

// Bounds on the shape of one event's JSON, checked before it is decoded. An event nests three
// deep (a CloudEvent, its data, the tags) and its widest part is its tags (Limits.MaxTags);
// without them, a 16 MiB event of 1.5 million tags took 259 MiB to decode before Validate
// counted them, and one of 16 million '[' nested that deep.
const (
	maxNesting = 32
	maxWidth   = 1024
)

// checkShape refuses JSON nested deeper than maxNesting or holding an object or array of
// more than maxWidth members, without decoding it.
func checkShape(data []byte) error {
	var commas [maxNesting + 1]int
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			// Most of a body is string contents: jump to the closing quote, one not escaped
			// by an odd run of backslashes before it. An unterminated string ends the scan.
			for {
				j := bytes.IndexByte(data[i+1:], '"')
				if j < 0 {
					return nil
				}
				i += 1 + j
				k := i - 1
				for k >= 0 && data[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		case '[', '{':
			if depth == maxNesting {
				return fmt.Errorf("nested more than %d deep", maxNesting)
			}
			depth++
			commas[depth] = 0
		case ']', '}':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth > 0 {
				if commas[depth]++; commas[depth] >= maxWidth {
					return fmt.Errorf("holds an object or array of more than %d members", maxWidth)
				}
			}
		}
	}
	return nil
}
