// Package otlp ingests OpenTelemetry GenAI spans (issue 6, M5): OTLP/HTTP trace exports,
// protobuf or JSON, at POST /v1/traces. Every span that reports GenAI token usage becomes a v1
// usage event; every other span is ignored (and counted), so an application can point its
// whole trace exporter at the collector.
//
// A span is a usage span when it carries gen_ai.usage.input_tokens or
// gen_ai.usage.output_tokens (or their deprecated names gen_ai.usage.prompt_tokens and
// gen_ai.usage.completion_tokens). It becomes an event as follows:
//
//	id             "otel-" + trace id + "-" + span id (hex), so a re-sent export is counted once
//	time           the span's end time; latency_ms its duration
//	provider       gen_ai.provider.name, else gen_ai.system, mapped to the catalogue's names
//	               (gcp.gemini, gcp.vertex_ai → google; aws.bedrock → bedrock;
//	               azure.ai.openai, az.ai.openai, azure.ai.inference → azure; x_ai → xai;
//	               mistral_ai → mistral; anything else as it is)
//	model          gen_ai.response.model, else gen_ai.request.model
//	operation      gen_ai.operation.name
//	usage          input_tokens ← gen_ai.usage.input_tokens (which, by the semantic
//	               conventions, includes cached tokens), output_tokens ← …output_tokens,
//	               cached_input_tokens ← …cache_read.input_tokens, cache_write_tokens ←
//	               …cache_creation.input_tokens, reasoning_tokens ← …reasoning.output_tokens
//	service_tier   openai.response.service_tier or gen_ai.openai.response.service_tier
//	response_id    gen_ai.response.id
//	status         "ok"; a span with status ERROR gets error.type, else "error"
//
// Tags, by this rule (a later step overrides an earlier one):
//
//  1. the resource's service.name becomes the tag service;
//  2. the resource's deployment.environment.name (or deprecated deployment.environment)
//     becomes the tag env;
//  3. the resource's, then the span's, tokenmeter.team, tokenmeter.feature, tokenmeter.env,
//     tokenmeter.cost_center and tokenmeter.traffic become those tags, tokenmeter.tag.KEY the
//     tag KEY, and tokenmeter.workflow_id / tokenmeter.prompt_version those fields.
//
// A tag that breaks the v1 rules is dropped (and counted) rather than losing the event. A
// usage span that cannot become a valid event (no model, a token count that is not an
// integer, a part larger than its whole) is rejected and reported in the answer's
// partial_success, as the OTLP specification asks.
package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tokenmeter/tokenmeter/collector/internal/guard"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Content types of OTLP/HTTP.
const (
	ContentProtobuf = "application/x-protobuf"
	ContentJSON     = "application/json"
)

// Path is where OTLP/HTTP exporters send traces.
const Path = "/v1/traces"

// Defaults applied to the zero values of Config.
const (
	DefaultMaxBodyBytes = 16 << 20
	DefaultMaxEvents    = 10_000
	// DefaultMaxSpans is 12 times the largest batch the OpenTelemetry Collector's batch
	// processor sends by default (8,192 spans), and 195 times the SDKs' (512).
	DefaultMaxSpans = 100_000
	// DefaultMaxElements bounds the messages of one request: decoded, each costs about 100
	// to 300 bytes, so a request costs at most a few hundred MB whatever its encoding. An
	// export of 8,192 GenAI spans of 20 attributes each holds about 340,000.
	DefaultMaxElements = 1_000_000
	// DefaultMaxMemoryBytes bounds what all requests being answered hold at once: room for
	// one request at every per-request limit (16 MiB read and 16 MiB decompressed, each in a
	// buffer up to twice that, 16 MiB of decoded bytes, a million messages: 240 MiB).
	DefaultMaxMemoryBytes = 256 << 20
)

// Acceptor publishes events; *collect.Collector is one. It returns the events it rejected
// (Index into events) and an error when it stored none of them. An error with HTTPStatus()
// and RetryAfterSeconds() methods decides the answer; any other error is answered 503.
type Acceptor interface {
	Accept(ctx context.Context, events []event.Usage) ([]event.Rejection, error)
}

// Config configures the handler.
type Config struct {
	// MaxBodyBytes bounds a request body, before and after decompression (default 16 MiB).
	MaxBodyBytes int64
	// MaxEvents bounds the usage spans of one request (default 10,000).
	MaxEvents int
	// MaxSpans bounds the spans of one request, usage spans or not (default
	// DefaultMaxSpans); MaxElements its messages of every kind — resource spans, spans,
	// attributes, events, links, values (default DefaultMaxElements). Both are counted
	// before the body is decoded, so that a small body of many empty messages cannot make
	// the handler build them.
	MaxSpans, MaxElements int
	// MaxMemoryBytes bounds the memory held for all the requests being answered at once:
	// bodies as read and decompressed, and an estimate of their decoded messages (default
	// DefaultMaxMemoryBytes). A request that would pass it is answered 503 with Retry-After,
	// which OTLP exporters retry.
	MaxMemoryBytes int64
	// Registerer receives the handler's metrics (default: not registered).
	Registerer prometheus.Registerer
	// Logger receives the handler's logs (default discards them).
	Logger *slog.Logger
}

// Handler serves POST /v1/traces.
type Handler struct {
	cfg     Config
	accept  Acceptor
	metrics *metrics
	mem     *memory
}

// NewHandler builds the handler publishing through a.
func NewHandler(a Acceptor, cfg Config) (*Handler, error) {
	if a == nil {
		return nil, errors.New("new OTLP handler: the acceptor is nil")
	}
	if cfg.MaxBodyBytes < 0 || cfg.MaxEvents < 0 || cfg.MaxSpans < 0 || cfg.MaxElements < 0 || cfg.MaxMemoryBytes < 0 {
		return nil, fmt.Errorf("new OTLP handler: max body bytes (%d), max events (%d), max spans (%d), max elements (%d) and max memory bytes (%d) must not be negative",
			cfg.MaxBodyBytes, cfg.MaxEvents, cfg.MaxSpans, cfg.MaxElements, cfg.MaxMemoryBytes)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxEvents == 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.MaxSpans == 0 {
		cfg.MaxSpans = DefaultMaxSpans
	}
	if cfg.MaxElements == 0 {
		cfg.MaxElements = DefaultMaxElements
	}
	if cfg.MaxMemoryBytes == 0 {
		cfg.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Handler{cfg: cfg, accept: a, metrics: m, mem: &memory{max: cfg.MaxMemoryBytes, gauge: m.memory}}, nil
}

// ServeHTTP answers as the OTLP/HTTP specification asks: 200 with an
// ExportTraceServiceResponse (partial_success when spans were rejected) in the request's
// encoding; 400 for a body that cannot be decoded, 413 over the limits, 415 for another
// content type, all with a google.rpc.Status; 429 or 503 with Retry-After when the events
// could not be stored, which OTLP exporters retry.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == ContentJSON
	if mt != ContentProtobuf && !isJSON {
		h.fail(w, isJSON, http.StatusUnsupportedMediaType, "", fmt.Sprintf("content type %q is not %s or %s", clip(mt), ContentProtobuf, ContentJSON))
		return
	}
	res := &reservation{m: h.mem}
	defer res.release()
	body, status, err := h.readBody(r, res)
	if err == nil {
		var req *coltracepb.ExportTraceServiceRequest
		if req, status, err = h.decode(body, isJSON, res); err == nil {
			h.export(w, r, req, isJSON)
			return
		}
	}
	if errors.Is(err, errBusy) {
		h.fail(w, isJSON, http.StatusServiceUnavailable, "1", fmt.Sprintf(
			"the collector holds %d MiB for other OTLP requests, its limit: send this one again later", h.cfg.MaxMemoryBytes>>20))
		return
	}
	h.fail(w, isJSON, status, "", err.Error())
}

// export turns the usage spans of req into events and answers with what became of them.
func (h *Handler) export(w http.ResponseWriter, r *http.Request, req *coltracepb.ExportTraceServiceRequest, isJSON bool) {
	b := spans(req, isJSON)
	h.metrics.spans.WithLabelValues("ignored").Add(float64(b.ignored))
	h.metrics.droppedTags.Add(float64(b.droppedTags))
	if len(b.events) > h.cfg.MaxEvents {
		h.fail(w, isJSON, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("%d GenAI usage spans, more than the limit of %d per request", len(b.events), h.cfg.MaxEvents))
		return
	}
	errs := b.rejected
	if len(b.events) > 0 {
		rejected, err := h.accept.Accept(r.Context(), b.events)
		if err != nil {
			st, retry := http.StatusServiceUnavailable, "5"
			var re interface {
				HTTPStatus() int
				RetryAfterSeconds() string
			}
			if errors.As(err, &re) {
				st, retry = re.HTTPStatus(), re.RetryAfterSeconds()
			}
			h.cfg.Logger.Warn("OTLP usage spans not stored", "spans", len(b.events), "err", err)
			h.fail(w, isJSON, st, retry, err.Error())
			return
		}
		for _, rj := range rejected {
			errs = append(errs, fmt.Sprintf("span %s: %s", rj.ID, rj.Error))
		}
	}
	h.metrics.spans.WithLabelValues("rejected").Add(float64(len(errs)))
	h.metrics.spans.WithLabelValues("accepted").Add(float64(len(b.events) - (len(errs) - len(b.rejected))))
	resp := &coltracepb.ExportTraceServiceResponse{}
	if len(errs) > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(len(errs)), ErrorMessage: summarize(errs)}
	}
	h.reply(w, isJSON, http.StatusOK, "", resp)
}

// summarize names the first rejections; the count says how many there were.
func summarize(errs []string) string {
	const shown = 5
	msg := strings.Join(errs[:min(shown, len(errs))], "; ")
	if len(errs) > shown {
		msg += fmt.Sprintf("; and %d more", len(errs)-shown)
	}
	return msg
}

// decode decodes an export request within the limits on its spans and messages, counted
// before anything is decoded (limits.go). On failure it returns the status to answer: 413
// over a limit, 400 for a body that is not a request.
func (h *Handler) decode(body []byte, isJSON bool, res *reservation) (*coltracepb.ExportTraceServiceRequest, int, error) {
	c := counter{maxSpans: h.cfg.MaxSpans, maxElements: h.cfg.MaxElements}
	scan := c.scanProtobuf
	if isJSON {
		scan = c.scanJSON
	}
	if err := scan(body); err != nil {
		if errors.Is(err, errOverLimit) {
			return nil, http.StatusRequestEntityTooLarge, err
		}
		return nil, http.StatusBadRequest, fmt.Errorf("decode ExportTraceServiceRequest: %w", err)
	}
	if !res.take(int64(len(body)) + int64(c.elements)*bytesPerElement) {
		return nil, http.StatusServiceUnavailable, errBusy
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	var err error
	if isJSON {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, req)
	} else {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decode ExportTraceServiceRequest: %w", err)
	}
	// The JSON scan may miss spans under keys written with escapes; count them again.
	if n := countSpans(req); n > h.cfg.MaxSpans {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: it holds %d spans, more than the limit of %d per request; send smaller batches",
			errOverLimit, n, h.cfg.MaxSpans)
	}
	return req, 0, nil
}

// readBody reads the body within MaxBodyBytes, decompressing gzip (the one compression the
// OTLP exporters use) within the same bound.
func (h *Handler) readBody(r *http.Request, res *reservation) ([]byte, int, error) {
	limit := h.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the body is %d bytes, more than the limit of %d", r.ContentLength, limit)
	}
	raw, err := io.ReadAll(io.LimitReader(reserving{r.Body, res}, limit+1)) // grows as the bytes arrive
	if errors.Is(err, errBusy) {
		return nil, http.StatusServiceUnavailable, err
	}
	if errors.Is(err, guard.ErrBodyTimeout) {
		return nil, http.StatusRequestTimeout, fmt.Errorf("read the body: %w", err)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("read the body: %w", err)
	}
	if int64(len(raw)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the body is more than the limit of %d bytes", limit)
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return raw, 0, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("decompress the gzip body: %w", err)
		}
		plain, err := io.ReadAll(io.LimitReader(reserving{zr, res}, limit+1))
		if errors.Is(err, errBusy) {
			return nil, http.StatusServiceUnavailable, err
		}
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("decompress the gzip body: %w", err)
		}
		if int64(len(plain)) > limit {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the decompressed body is more than the limit of %d bytes", limit)
		}
		return plain, 0, nil
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q is not gzip", clip(enc))
	}
}

func (h *Handler) fail(w http.ResponseWriter, isJSON bool, code int, retryAfter, msg string) {
	// Decoders quote the bytes they stumble on, and a Status message must be UTF-8.
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	h.reply(w, isJSON, code, retryAfter, &status.Status{Code: grpcCode(code), Message: msg})
}

func (h *Handler) reply(w http.ResponseWriter, isJSON bool, code int, retryAfter string, m proto.Message) {
	h.metrics.requests.WithLabelValues(fmt.Sprint(code)).Inc()
	var data []byte
	var err error
	ct := ContentProtobuf
	if isJSON {
		ct = ContentJSON
		data, err = protojson.Marshal(m)
	} else {
		data, err = proto.Marshal(m)
	}
	if err != nil {
		http.Error(w, "encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

// grpcCode maps an HTTP status to the google.rpc.Code the Status body carries.
func grpcCode(httpStatus int) int32 {
	switch httpStatus {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return 3 // INVALID_ARGUMENT
	case http.StatusRequestTimeout:
		return 4 // DEADLINE_EXCEEDED
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// hexID is the hex form of a trace or span id of size bytes, and whether the id is valid.
// OTLP/JSON carries ids as hex strings where protojson expects base64 for bytes fields;
// protojson decodes the hex digits as base64 without complaint (every hex digit is a base64
// digit), so for JSON the original hex string is recovered by encoding the bytes back to
// base64 (exact, since 32 and 16 digits decode without padding). A JSON sender that used
// base64 after all is read as such.
func hexID(b []byte, size int, fromJSON bool) (string, bool) {
	if fromJSON {
		s := strings.ToLower(base64.StdEncoding.EncodeToString(b))
		if _, err := hex.DecodeString(s); err == nil && len(s) == 2*size {
			return s, true
		}
	}
	return hex.EncodeToString(b), len(b) == size
}

func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "…"
}
