package otlp

// Bounds on what one export request may make the handler build. The decompressed body is
// bounded by MaxBodyBytes, but a decoded message costs far more memory than its encoding: an
// empty span is 2 bytes of protobuf (3 of JSON) and a few hundred bytes once decoded, so a
// 7.8 KB gzip body of 4 million empty spans used to cost 1.7 GB. The body is therefore
// scanned before it is decoded, counting its spans and its messages (every nested message of
// protobuf, every object of JSON), and refused as soon as a count passes its limit: the scan
// allocates nothing but a stack of its nesting, and the decode that follows it is bounded by the limits.

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// maxDepth bounds the nesting of a body, as protobuf's and protojson's decoders do by default.
const maxDepth = 10_000

// errOverLimit means a body holds more spans or messages than the handler's limits (413).
var errOverLimit = errors.New("request too large")

var (
	requestDescriptor = (&coltracepb.ExportTraceServiceRequest{}).ProtoReflect().Descriptor()
	spanName          = (&tracepb.Span{}).ProtoReflect().Descriptor().FullName()
)

// counter counts spans and messages against their limits.
type counter struct {
	maxSpans, maxElements int
	spans, elements       int
}

func (c *counter) element(isSpan bool) error {
	c.elements++
	if isSpan {
		c.spans++
	}
	switch {
	case c.spans > c.maxSpans:
		return fmt.Errorf("%w: it holds more than %d spans, the limit per request; send smaller batches", errOverLimit, c.maxSpans)
	case c.elements > c.maxElements:
		return fmt.Errorf("%w: it holds more than %d messages (spans, attributes, events, links, values), the limit per request; send smaller batches", errOverLimit, c.maxElements)
	}
	return nil
}

// scanProtobuf counts the spans and messages of an ExportTraceServiceRequest in protobuf wire
// format, following the message descriptors, without decoding anything. It returns an error
// wrapping errOverLimit as soon as a count passes its limit, and the wire format's own error
// for a malformed body.
func (c *counter) scanProtobuf(b []byte) error {
	return c.scanMessage(b, requestDescriptor, 0)
}

func (c *counter) scanMessage(b []byte, md protoreflect.MessageDescriptor, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("messages nested more than %d deep", maxDepth)
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			if fd := fields.ByNumber(num); fd != nil && fd.Kind() == protoreflect.MessageKind {
				v, n := protowire.ConsumeBytes(b)
				if n < 0 {
					return protowire.ParseError(n)
				}
				if err := c.element(fd.Message().FullName() == spanName); err != nil {
					return err
				}
				if err := c.scanMessage(v, fd.Message(), depth+1); err != nil {
					return err
				}
				b = b[n:]
				continue
			}
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// JSON keys on the path to a span: resourceSpans[].scopeSpans[].spans[] (protojson accepts
// the proto names too).
const (
	keyOther = iota
	keyResourceSpans
	keyScopeSpans
	keySpans
)

func jsonKey(s []byte) uint8 {
	switch string(s) {
	case "resourceSpans", "resource_spans":
		return keyResourceSpans
	case "scopeSpans", "scope_spans":
		return keyScopeSpans
	case "spans":
		return keySpans
	}
	return keyOther
}

// scanJSON counts the objects of an OTLP/JSON body, and among them the spans, without
// decoding anything; it returns an error wrapping errOverLimit as soon as a count passes its
// limit. It checks nothing else: protojson reports a malformed body. A span under a key
// written with escapes ("sp\u0061ns") is counted as an object only; the objects' bound still
// holds, and the spans are counted again once decoded.
func (c *counter) scanJSON(b []byte) error {
	// stack holds, for each open container, the key it is the value of.
	var stack []uint8
	var key uint8 // the key of the value that comes next, once its ':' is read
	var last uint8
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			start := i + 1
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return nil // unterminated: protojson says so
			}
			last = jsonKey(b[start:i])
		case ':':
			key, last = last, keyOther
		case ',':
			key = keyOther
		case '{', '[':
			if len(stack) >= maxDepth {
				return fmt.Errorf("JSON nested more than %d deep", maxDepth)
			}
			if b[i] == '{' {
				d := len(stack)
				span := d == 6 && stack[5] == keySpans && stack[3] == keyScopeSpans && stack[1] == keyResourceSpans
				if err := c.element(span); err != nil {
					return err
				}
			}
			stack = append(stack, key)
			key = keyOther
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			key = keyOther
		}
	}
	return nil
}

// countSpans counts the spans of a decoded request.
func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

// bytesPerElement estimates what a decoded message costs: an empty attribute (KeyValue) is
// about 130 bytes with its pointer; a span with its fields set, more, but spans are few.
const bytesPerElement = 160

// errBusy means the handler holds as much memory for other requests as it may (503).
var errBusy = errors.New("busy")

// memory bounds what the handler holds for all the requests it is answering at once — their
// bodies as read and decompressed, and an estimate of their decoded form (the body's bytes,
// which the decoders copy, and bytesPerElement per message) — so that many
// small requests that each expand to the per-request limits (gzip bombs of 16 MiB, a million
// empty attributes) cannot add up to more than MaxMemoryBytes. It is safe for concurrent use.
type memory struct {
	mu        sync.Mutex
	max, used int64
	peak      int64 // the most ever held, for tests
	gauge     prometheus.Gauge
}

// reservation is what one request holds of a memory.
type reservation struct {
	m    *memory
	held int64
}

// take reserves n more bytes, or reports that the memory cannot spare them.
func (r *reservation) take(n int64) bool {
	m := r.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used+n > m.max {
		return false
	}
	m.used += n
	m.peak = max(m.peak, m.used)
	r.held += n
	m.gauge.Set(float64(m.used))
	return true
}

// release gives back everything r holds.
func (r *reservation) release() {
	m := r.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.used -= r.held
	r.held = 0
	m.gauge.Set(float64(m.used))
}

// reserving reads from r, reserving two bytes for every byte it reads — io.ReadAll's buffer
// doubles as it grows — and failing with errBusy past the memory's limit.
type reserving struct {
	r   io.Reader
	res *reservation
}

func (rr reserving) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if n > 0 && !rr.res.take(2*int64(n)) {
		return 0, errBusy
	}
	return n, err
}
