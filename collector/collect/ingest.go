package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/collector/internal/guard"
	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Publishing outcomes that decide the HTTP status.
var (
	// errFull means JetStream refused because USAGE_RAW (DiscardNew) or the account is full.
	errFull = errors.New("JetStream cannot take more: the stream is full")
	// errNotConnected means the NATS connection is down (reconnecting or closed).
	errNotConnected = errors.New("NATS is not connected")
)

// accepted is the body of a 202 answer.
type accepted struct {
	Accepted int               `json:"accepted"`
	Rejected []event.Rejection `json:"rejected"`
}

// failure is the body of every other answer.
type failure struct {
	Error string `json:"error"`
}

// ingest serves POST /v1/events. It answers 202 only after JetStream acknowledged every
// message holding the body's valid events, so "accepted" means durable. When publishing fails
// it answers 429 or 503 for the whole body: some partitions' messages may be stored already,
// and a client that sends the same body again loses nothing and doubles nothing, because the
// enricher de-duplicates by event id.
func (c *Collector) ingest(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > c.cfg.MaxBodyBytes {
		c.fail(w, http.StatusRequestEntityTooLarge, "",
			fmt.Sprintf("the body is %d bytes, more than the limit of %d bytes", r.ContentLength, c.cfg.MaxBodyBytes))
		return
	}
	buf, _ := c.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	// Nothing decoded keeps a reference into the body (the JSON decoder copies its input), so
	// the buffer goes back once the answer is written.
	defer c.bodies.Put(buf)
	body, err := readBodyInto(buf, http.MaxBytesReader(w, r.Body, c.cfg.MaxBodyBytes), r.ContentLength)
	if err != nil {
		status, msg := bodyError(err)
		c.fail(w, status, "", msg)
		return
	}

	received := c.now()
	dec, _ := c.decoders.Get().(*event.Decoder)
	if dec == nil {
		dec = new(event.Decoder)
	}
	// Nothing keeps an event, nor its tags or units map, once the answer is written (the
	// rows copy what they need, the key and the tag policy copy a map they change): the
	// decoder takes them back then, for the next body.
	defer func() {
		dec.Recycle()
		c.decoders.Put(dec)
	}()
	b, err := dec.Decode(body, r.Header.Get("Content-Type"), received, c.cfg.Limits, c.cfg.MaxEvents)
	switch {
	case errors.Is(err, event.ErrTooManyEvents):
		c.fail(w, http.StatusRequestEntityTooLarge, "", err.Error())
		return
	case err != nil:
		c.fail(w, http.StatusBadRequest, "", err.Error())
		return
	}
	// API key and tag policy (auth.go): refused events join the rejections.
	ra := c.attr.request(r.Context())
	c.attr.applyBatch(ra, &b)
	// Budget hard caps (collector/budget): refused events join the rejections; a body left
	// with nothing to accept is answered 429 with the reason.
	if first, n := c.cfg.Budgets.Apply(&b); n > 0 {
		c.metrics.refused.WithLabelValues("budget").Add(float64(n))
		if len(b.Events) == 0 {
			c.fail(w, http.StatusTooManyRequests, "", first)
			return
		}
	}
	for _, rej := range b.Rejected {
		c.metrics.rejected.WithLabelValues(reasonClass(rej.Error)).Inc()
	}

	if len(b.Events) > 0 {
		encodeErr, err := c.publishEvents(b.Events, ra.source(), received)
		if encodeErr != nil {
			c.fail(w, http.StatusInternalServerError, "", encodeErr.Error())
			return
		}
		if err != nil {
			status, retryAfter, reason := http.StatusServiceUnavailable, retryAfterUnavailable, "unavailable"
			if errors.Is(err, errFull) {
				status, retryAfter, reason = http.StatusTooManyRequests, retryAfterFull, "full"
			}
			c.metrics.refused.WithLabelValues(reason).Add(float64(len(b.Events)))
			c.cfg.Logger.Warn("refused a body of usage events", "status", status, "events", len(b.Events), "err", err)
			c.fail(w, status, retryAfter, fmt.Sprintf(
				"none of the %d valid events is accepted, send the whole body again later: %v", len(b.Events), err))
			return
		}
	}

	c.metrics.accepted.Add(float64(len(b.Events)))
	if b.Rejected == nil {
		b.Rejected = []event.Rejection{}
	}
	c.reply(w, http.StatusAccepted, "", accepted{Accepted: len(b.Events), Rejected: b.Rejected})
}

// readBody reads all of r. The buffer grows as the bytes arrive, never sized from the
// request's Content-Length beyond readAhead: a client announcing 16 MB and sending one byte
// must cost one byte, not 16 MB.
func readBody(r io.Reader, contentLength int64) ([]byte, error) {
	return readBodyInto(new(bytes.Buffer), r, contentLength)
}

// readBodyInto is readBody into buf, which may hold room from an earlier body.
func readBodyInto(buf *bytes.Buffer, r io.Reader, contentLength int64) ([]byte, error) {
	if contentLength > 0 {
		buf.Grow(int(min(contentLength, readAhead)) + 1) // +1 so that reading EOF does not grow the buffer
	}
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// readAhead is the most readBody allocates before the bytes arrive: most bodies fit in it.
const readAhead = 64 << 10

// bodyError is the status and message answering a failure to read a request body.
func bodyError(err error) (int, string) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is more than the limit of %d bytes", tooLarge.Limit)
	case errors.Is(err, guard.ErrBodyTimeout):
		return http.StatusRequestTimeout, "read the body: " + err.Error()
	}
	return http.StatusBadRequest, "read the body: " + err.Error()
}

// publishEvents encodes events (messages) and publishes them (publish), and returns the
// error of the one that failed. The messages' data are in a recycled buffer that goes back
// only once JetStream acknowledged every message: until then the NATS client may publish one
// again from it.
func (c *Collector) publishEvents(events []event.Usage, source string, received time.Time) (encodeErr, publishErr error) {
	payloads, _ := c.payloads.Get().(*[]byte)
	if payloads == nil {
		payloads = new([]byte)
	}
	msgs, buf, err := c.messages(events, source, received, rawbatch.MaxPayload(c.nc), (*payloads)[:0])
	if err != nil {
		c.payloads.Put(payloads)
		return err, nil
	}
	if err := c.publish(msgs); err != nil {
		return nil, err
	}
	*payloads = buf[:0]
	c.payloads.Put(payloads)
	return nil, nil
}

// messages groups events by partition, in body order, and encodes each partition's rows, of
// the given source (batch.Row.Source), into messages of at most maxPayload bytes, their data
// appended to buf, which it returns (see rawbatch.AppendEncoded).
func (c *Collector) messages(events []event.Usage, source string, received time.Time, maxPayload int64, buf []byte) ([]rawbatch.Message, []byte, error) {
	// The rows of every partition lie in one recycled slice, partition after partition: a
	// 1,000-event body's rows are ~480 KiB, and growing a slice per partition for every
	// request made them the collector's largest source of garbage after decoding.
	g, _ := c.grouping.Get().(*grouping)
	if g == nil {
		g = new(grouping)
	}
	defer c.grouping.Put(g)
	n, parts := len(events), c.cfg.Partitions
	g.rows = slices.Grow(g.rows[:0], n)[:n]
	g.part = slices.Grow(g.part[:0], n)[:n]
	g.start = slices.Grow(g.start[:0], parts+1)[:parts+1]
	g.next = slices.Grow(g.next[:0], parts)[:parts]
	// A counting sort by partition: count each partition's rows, sum the counts into where
	// each partition starts, then place every row after the ones before it.
	clear(g.start)
	for i := range events {
		p := stream.PartitionOf(events[i].Provider, events[i].ResponseID, events[i].ID, parts)
		g.part[i] = p
		g.start[p+1]++
	}
	for p := range parts {
		g.start[p+1] += g.start[p]
	}
	copy(g.next, g.start)
	for i := range events {
		p := g.part[i]
		r := &g.rows[g.next[p]]
		g.next[p]++
		*r = batch.FromUsage(&events[i], received, p)
		r.Source = source
	}
	defer clear(g.rows) // the pool must not keep the events' strings alive
	var msgs []rawbatch.Message
	for p := range parts {
		rs := g.rows[g.start[p]:g.start[p+1]]
		if len(rs) == 0 {
			continue
		}
		var err error
		if msgs, buf, err = rawbatch.AppendEncoded(msgs, buf, p, rs, maxPayload); err != nil {
			return nil, buf, err
		}
	}
	return msgs, buf, nil
}

// grouping is the recycled state of messages.
type grouping struct {
	rows []batch.Row
	// part is each event's partition; partition p's rows are rows[start[p]:start[p+1]];
	// next is where the next row of each partition goes while they are placed.
	part, start, next []int
}

// publish publishes msgs through the circuit breaker and waits for every acknowledgement.
// The error wraps errFull when JetStream refused only because it is full.
func (c *Collector) publish(msgs []rawbatch.Message) error {
	start := time.Now()
	_, err := c.breaker.Execute(func() (any, error) {
		if !c.nc.IsConnected() {
			return nil, fmt.Errorf("%w (status %s)", errNotConnected, c.nc.Status())
		}
		// The request's own context is not used: a client hanging up must not count as a
		// NATS failure, and the wait is bounded by PublishTimeout anyway.
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PublishTimeout)
		defer cancel()
		return nil, summarize(rawbatch.Publish(ctx, c.js, msgs))
	})
	c.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return fmt.Errorf("publishing to NATS failed repeatedly, the circuit breaker is open: %w", err)
	case err != nil:
		return err
	}
	c.metrics.messages.Add(float64(len(msgs)))
	return nil
}

// summarize turns per-message outcomes into one error naming the first failure and how many
// messages failed; it wraps errFull when every failure is a full stream.
func summarize(errs []error) error {
	var first error
	failed, full := 0, 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		failed++
		if stream.IsFull(err) {
			full++
		}
	}
	switch {
	case failed == 0:
		return nil
	case full == failed:
		return fmt.Errorf("%w: %d of %d messages refused, first: %w", errFull, failed, len(errs), first)
	default:
		return fmt.Errorf("%d of %d messages not acknowledged, first: %w", failed, len(errs), first)
	}
}

func (c *Collector) fail(w http.ResponseWriter, status int, retryAfter, msg string) {
	c.reply(w, status, retryAfter, failure{Error: msg})
}

func (c *Collector) reply(w http.ResponseWriter, status int, retryAfter string, body any) {
	c.metrics.requests.WithLabelValues(strconv.Itoa(status)).Inc()
	data, err := json.Marshal(body)
	if err != nil {
		// Only our own plain structs are marshalled; this cannot happen, but say so if it does.
		http.Error(w, "encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// reasonClass maps a rejection message to a small, fixed set of metric labels; the messages
// themselves embed client data (tag keys, values) and would explode the label cardinality.
func reasonClass(msg string) string {
	for _, p := range [...]string{"not a JSON event object", "not a usage event", "not a CloudEvent object", "data: not a usage event"} {
		if strings.HasPrefix(msg, p) {
			return "malformed"
		}
	}
	field, _, ok := strings.Cut(msg, ":")
	if !ok {
		return "other"
	}
	switch {
	case field == "specversion", field == "type", field == "datacontenttype", field == "data":
		return "cloudevent"
	case field == "tags" || strings.HasPrefix(field, "tags."):
		return "tags"
	case field == "usage" || strings.HasPrefix(field, "usage."):
		return "usage"
	}
	switch field {
	case "id", "provider", "model", "time", "service_tier", "latency_ms",
		"operation", "status", "response_id", "workflow_id", "prompt_version":
		return field
	}
	return "other"
}
