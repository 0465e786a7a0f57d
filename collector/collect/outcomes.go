package collect

// POST /v1/outcomes (DESIGN.md §2.2): what a workflow achieved — "resolved", "escalated",
// "abandoned" — so that analysts can put its cost next to its result (cost per successful
// outcome, docs/cookbook.md). Outcomes go to JetStream's OUTCOMES stream and from there to
// ClickHouse's outcomes table (aggregator/outcomes).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/collector/internal/rawbatch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// MaxOutcomeLen bounds an outcome label. Labels are categories that analysts group by, so they
// are short and of a fixed alphabet: "Resolved" and "resolved " would otherwise be two groups.
const MaxOutcomeLen = 64

// errNoOutcomes means nothing in a body could be read as outcomes (answered 400).
var errNoOutcomes = errors.New("body holds no readable outcomes")

// errTooManyOutcomes means a body holds more than Config.MaxEvents outcomes (answered 413).
var errTooManyOutcomes = errors.New("too many outcomes in one body")

// outcomeIn is one outcome as a client sends it.
type outcomeIn struct {
	// ID is optional: the idempotency key. Without it, the id is derived from the other
	// fields, so a client that retries should send time (or id).
	ID         string    `json:"id"`
	WorkflowID string    `json:"workflow_id"`
	Outcome    string    `json:"outcome"`
	Time       time.Time `json:"time"`
}

// outcomeRejection names an outcome of a body that was not accepted, and why.
type outcomeRejection struct {
	Index      int    `json:"index"`
	WorkflowID string `json:"workflow_id,omitempty"`
	Error      string `json:"error"`
}

// outcomesAccepted is the body of a 202 answer to POST /v1/outcomes.
type outcomesAccepted struct {
	Accepted int                `json:"accepted"`
	Rejected []outcomeRejection `json:"rejected"`
}

// outcomeBatch is a decoded body: the valid outcomes in body order and the rejections.
type outcomeBatch struct {
	Outcomes []stream.Outcome
	Rejected []outcomeRejection
}

// decodeOutcomes reads a body of outcomes: one JSON object, a JSON array of them, or NDJSON.
// Each element is validated on its own (received is its default time and the clock its time
// is checked against), so one bad element rejects only itself. It returns an error wrapping
// errNoOutcomes when the body as a whole cannot be read and errTooManyOutcomes when it holds
// more than max elements.
func decodeOutcomes(body []byte, contentType string, received time.Time, lim event.Limits, max int) (outcomeBatch, error) {
	mt := event.ContentJSON
	if contentType != "" {
		parsed, _, err := mime.ParseMediaType(contentType)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return outcomeBatch{}, fmt.Errorf("%w: content type %q: %v", errNoOutcomes, contentType, err)
		}
		mt = parsed
	}
	switch mt {
	case event.ContentJSON, event.ContentNDJSON, "text/plain", "application/jsonl", "application/x-jsonlines":
	default:
		return outcomeBatch{}, fmt.Errorf("%w: content type %q is not one of %s, %s",
			errNoOutcomes, mt, event.ContentJSON, event.ContentNDJSON)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return outcomeBatch{}, fmt.Errorf("%w: the body is empty", errNoOutcomes)
	}
	d := outcomeDecoder{received: received, lim: lim}
	switch {
	case body[0] == '[':
		// Counted before decoding: millions of tiny elements would cost a GB decoded.
		if n := event.ArrayLen(body); n > max {
			return outcomeBatch{}, fmt.Errorf("%w: %d outcomes, the limit is %d", errTooManyOutcomes, n, max)
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			return outcomeBatch{}, fmt.Errorf("%w: not a JSON array: %v", errNoOutcomes, err)
		}
		if len(raw) == 0 {
			return outcomeBatch{}, fmt.Errorf("%w: the array is empty", errNoOutcomes)
		}
		if len(raw) > max {
			return outcomeBatch{}, fmt.Errorf("%w: %d outcomes, the limit is %d", errTooManyOutcomes, len(raw), max)
		}
		for i, r := range raw {
			d.element(i, r)
		}
		return d.out, nil
	case body[0] == '{' && json.Valid(body):
		// One outcome, possibly pretty-printed over several lines.
		d.element(0, body)
		return d.out, nil
	}
	if n := bytes.Count(body, []byte{'\n'}) + 1; n > max {
		return outcomeBatch{}, fmt.Errorf("%w: %d lines, the limit is %d", errTooManyOutcomes, n, max)
	}
	index := 0
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		d.element(index, line)
		index++
	}
	if d.syntax == index {
		return outcomeBatch{}, fmt.Errorf("%w: no line is a JSON object (line 0: %s)", errNoOutcomes, d.out.Rejected[0].Error)
	}
	return d.out, nil
}

type outcomeDecoder struct {
	received time.Time
	lim      event.Limits
	out      outcomeBatch
	// syntax counts the elements that were not JSON objects at all.
	syntax int
}

func (d *outcomeDecoder) element(index int, data []byte) {
	var in outcomeIn
	if err := json.Unmarshal(data, &in); err != nil {
		// A well-formed object with a wrongly typed field is a readable outcome with a bad
		// field, not garbage.
		if data[0] == '{' && json.Valid(data) {
			d.reject(index, probeWorkflow(data), "not an outcome: "+err.Error())
			return
		}
		d.syntax++
		d.reject(index, "", "not a JSON outcome object: "+err.Error())
		return
	}
	o, err := in.validate(d.received, d.lim)
	if err != nil {
		d.reject(index, in.WorkflowID, err.Error())
		return
	}
	d.out.Outcomes = append(d.out.Outcomes, o)
}

func (d *outcomeDecoder) reject(index int, workflowID, msg string) {
	if len(workflowID) > d.lim.MaxString || !utf8.ValidString(workflowID) || strings.IndexFunc(workflowID, isInvisible) >= 0 {
		workflowID = "" // never echo a hostile value back
	}
	d.out.Rejected = append(d.out.Rejected, outcomeRejection{Index: index, WorkflowID: workflowID, Error: msg})
}

// probeWorkflow recovers the workflow id of an outcome that failed to decode, so that the
// rejection can name it.
func probeWorkflow(data []byte) string {
	var p struct {
		WorkflowID string `json:"workflow_id"`
	}
	if json.Unmarshal(data, &p) != nil {
		return ""
	}
	return p.WorkflowID
}

// validate checks in against the limits and returns the outcome to store: time defaults to
// received and is kept to the millisecond in UTC; the id defaults to stream.OutcomeID.
func (in *outcomeIn) validate(received time.Time, lim event.Limits) (stream.Outcome, error) {
	if err := checkText("workflow_id", in.WorkflowID, lim.MaxString, true); err != nil {
		return stream.Outcome{}, err
	}
	if err := checkText("id", in.ID, lim.MaxID, false); err != nil {
		return stream.Outcome{}, err
	}
	switch {
	case in.Outcome == "":
		return stream.Outcome{}, errors.New("outcome: is required")
	case len(in.Outcome) > MaxOutcomeLen || strings.IndexFunc(in.Outcome, notLabel) >= 0:
		return stream.Outcome{}, fmt.Errorf("outcome: %q must be 1 to %d characters of a-z, 0-9, '_', '.', '-'",
			clipText(in.Outcome), MaxOutcomeLen)
	}
	t := in.Time
	if t.IsZero() {
		t = received
	}
	t = t.UTC().Truncate(time.Millisecond)
	switch {
	case t.After(received.Add(lim.MaxFuture)):
		return stream.Outcome{}, fmt.Errorf("time: %s is more than %s ahead of the collector's clock (%s)",
			t.Format(time.RFC3339Nano), lim.MaxFuture, received.UTC().Format(time.RFC3339Nano))
	case t.Before(received.Add(-lim.MaxAge)):
		return stream.Outcome{}, fmt.Errorf("time: %s is more than %s before the collector's clock (%s)",
			t.Format(time.RFC3339Nano), lim.MaxAge, received.UTC().Format(time.RFC3339Nano))
	}
	id := in.ID
	if id == "" {
		id = stream.OutcomeID(in.WorkflowID, in.Outcome, t)
	}
	return stream.Outcome{ID: id, WorkflowID: in.WorkflowID, Outcome: in.Outcome, Time: t, ReceivedAt: received.UTC().Truncate(time.Millisecond)}, nil
}

func checkText(field, v string, max int, required bool) error {
	switch {
	case v == "" && required:
		return fmt.Errorf("%s: is required", field)
	case len(v) > max:
		return fmt.Errorf("%s: is %d bytes long, more than the limit of %d", field, len(v), max)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s: is not valid UTF-8", field)
	}
	for _, r := range v {
		switch class := event.Invisible(r); {
		case class == "":
		case r < 0x80:
			return fmt.Errorf("%s: contains a control character", field)
		default:
			return fmt.Errorf("%s: contains %s (U+%04X)", field, class, r)
		}
	}
	return nil
}

// isInvisible reports the characters ids may not contain (event.Invisible).
func isInvisible(r rune) bool { return event.Invisible(r) != "" }

func notLabel(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
}

// clipText keeps error messages short and valid UTF-8 when the offending value is long or
// hostile.
func clipText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= 64 {
		return s
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// outcomeHandler serves POST /v1/outcomes for a Collector, with metrics of its own.
type outcomeHandler struct {
	c        *Collector
	requests *prometheus.CounterVec
	outcomes *prometheus.CounterVec
}

// mountOutcomes registers the handler of POST /v1/outcomes and its metrics.
func (c *Collector) mountOutcomes() error {
	h := &outcomeHandler{
		c: c,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_outcome_requests_total",
			Help: "POST /v1/outcomes requests by HTTP status.",
		}, []string{"code"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenmeter_collector_outcomes_total",
			Help: "Outcomes by result: accepted (stored in OUTCOMES), rejected (invalid), refused (429/503, to send again).",
		}, []string{"result"}),
	}
	for _, m := range []prometheus.Collector{h.requests, h.outcomes} {
		if err := c.cfg.Registerer.Register(m); err != nil {
			return fmt.Errorf("register outcome metrics: %w", err)
		}
	}
	c.mux.Handle("POST /v1/outcomes", c.attr.authenticate(http.HandlerFunc(h.serve)))
	return nil
}

// serve answers 202 only after JetStream stored every valid outcome of the body; 400 when
// nothing can be read, 413 over the limits, 429/503 with Retry-After when JetStream cannot
// take them. Sending the same body again stores nothing twice (see stream.OutcomeID).
func (h *outcomeHandler) serve(w http.ResponseWriter, r *http.Request) {
	cfg := h.c.cfg
	if r.ContentLength > cfg.MaxBodyBytes {
		h.fail(w, http.StatusRequestEntityTooLarge, "",
			fmt.Sprintf("the body is %d bytes, more than the limit of %d bytes", r.ContentLength, cfg.MaxBodyBytes))
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, cfg.MaxBodyBytes), r.ContentLength)
	if err != nil {
		status, msg := bodyError(err)
		h.fail(w, status, "", msg)
		return
	}
	received := h.c.now()
	b, err := decodeOutcomes(body, r.Header.Get("Content-Type"), received, cfg.Limits, cfg.MaxEvents)
	switch {
	case errors.Is(err, errTooManyOutcomes):
		h.fail(w, http.StatusRequestEntityTooLarge, "", err.Error())
		return
	case err != nil:
		h.fail(w, http.StatusBadRequest, "", err.Error())
		return
	}
	h.outcomes.WithLabelValues("rejected").Add(float64(len(b.Rejected)))
	if len(b.Outcomes) > 0 {
		if err := h.publish(b.Outcomes); err != nil {
			status, retryAfter := http.StatusServiceUnavailable, retryAfterUnavailable
			if errors.Is(err, errFull) {
				status, retryAfter = http.StatusTooManyRequests, retryAfterFull
			}
			h.outcomes.WithLabelValues("refused").Add(float64(len(b.Outcomes)))
			cfg.Logger.Warn("refused a body of outcomes", "status", status, "outcomes", len(b.Outcomes), "err", err)
			h.fail(w, status, retryAfter, fmt.Sprintf(
				"none of the %d valid outcomes is accepted, send the whole body again later: %v", len(b.Outcomes), err))
			return
		}
	}
	h.outcomes.WithLabelValues("accepted").Add(float64(len(b.Outcomes)))
	if b.Rejected == nil {
		b.Rejected = []outcomeRejection{}
	}
	h.reply(w, http.StatusAccepted, "", outcomesAccepted{Accepted: len(b.Outcomes), Rejected: b.Rejected})
}

// outcomeMessages splits outs into NDJSON payloads of at most maxPayload bytes each (an outcome
// larger than that alone — impossible within the limits — still gets a message of its own).
func outcomeMessages(outs []stream.Outcome, maxPayload int64) ([]*nats.Msg, error) {
	var msgs []*nats.Msg
	var data []byte
	first := 0
	flush := func(end int) {
		m := nats.NewMsg(stream.OutcomesSubject)
		m.Data = data
		m.Header.Set(stream.HeaderSchema, stream.OutcomeSchema)
		m.Header.Set(jetstream.MsgIDHeader, stream.OutcomesMsgID(outs[first:end]))
		msgs = append(msgs, m)
		data, first = nil, end
	}
	for i := range outs {
		line, err := stream.EncodeOutcomes(nil, outs[i:i+1])
		if err != nil {
			return nil, err
		}
		if len(data) > 0 && int64(len(data)+len(line)) > maxPayload {
			flush(i)
		}
		data = append(data, line...)
	}
	if len(data) > 0 {
		flush(len(outs))
	}
	return msgs, nil
}

// outcomeHeaderRoom is what a message's headers take of the server's max payload.
const outcomeHeaderRoom = 1024

// publish stores outs in OUTCOMES through the collector's circuit breaker and waits for every
// acknowledgement. The error wraps errFull when JetStream refused only because it is full.
func (h *outcomeHandler) publish(outs []stream.Outcome) error {
	c := h.c
	msgs, err := outcomeMessages(outs, rawbatch.MaxPayload(c.nc)-outcomeHeaderRoom)
	if err != nil {
		return err
	}
	_, err = c.breaker.Execute(func() (any, error) {
		if !c.nc.IsConnected() {
			return nil, fmt.Errorf("%w (status %s)", errNotConnected, c.nc.Status())
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PublishTimeout)
		defer cancel()
		errs := make([]error, len(msgs))
		for i, m := range msgs {
			if _, err := c.js.PublishMsg(ctx, m); err != nil {
				// The client's error wraps the server's as "nats: nats: API error…"; name the
				// server's alone.
				var apiErr *jetstream.APIError
				if errors.As(err, &apiErr) {
					err = apiErr
				}
				errs[i] = fmt.Errorf("message %d of %d: %w", i+1, len(msgs), err)
			}
		}
		return nil, summarize(errs)
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return fmt.Errorf("publishing to NATS failed repeatedly, the circuit breaker is open: %w", err)
	case err != nil:
		return fmt.Errorf("publish %d outcomes to %s: %w", len(outs), stream.Outcomes, err)
	}
	return nil
}

func (h *outcomeHandler) fail(w http.ResponseWriter, status int, retryAfter, msg string) {
	h.reply(w, status, retryAfter, failure{Error: msg})
}

func (h *outcomeHandler) reply(w http.ResponseWriter, status int, retryAfter string, body any) {
	h.requests.WithLabelValues(strconv.Itoa(status)).Inc()
	data, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	if retryAfter != "" {
		hd.Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
