// Package proxy is tokenmeter's proxy mode (issue 6, M4): an OpenAI-compatible and
// Anthropic-compatible reverse proxy. A service changes only its base URL; the proxy forwards
// every request and response unchanged (status, headers, errors, and server-sent event
// streams chunk by chunk, without buffering them), reads the usage from the response as it
// passes by, and emits a v1 usage event per call with the provider's response id.
//
// Routes are path prefixes: with the default routes an OpenAI SDK uses the base URL
// http://PROXY/openai/v1 and an Anthropic SDK http://PROXY/anthropic. The request is forwarded
// to the route's upstream with the prefix removed.
//
// What the proxy changes on the way, and why:
//   - X-Tokenmeter-* request headers are read (tags) and removed;
//   - on metered calls, Accept-Encoding is narrowed to gzip (or identity), the one encoding
//     the proxy can read the usage through;
//   - with Config.InjectStreamUsage (off by default), streamed Chat Completions requests get
//     stream_options.include_usage, without which OpenAI does not report a stream's usage;
//   - hop-by-hop headers are handled as every HTTP proxy must (net/http/httputil).
//
// A call forwarded that was or may have been billed but whose answer carried no usage (cut
// off, abandoned, timed out, an error after generation began) is emitted as an estimated
// event (escape.go).
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/collector/internal/guard"
	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// API is the shape of an upstream's API, which decides which paths are metered and how
// their responses are read.
type API string

// The APIs the proxy reads.
const (
	// APIOpenAI meters POST …/chat/completions, …/responses and …/embeddings.
	APIOpenAI API = "openai"
	// APIAnthropic meters POST …/v1/messages.
	APIAnthropic API = "anthropic"
)

// Route sends requests under a path prefix to an upstream.
type Route struct {
	// Prefix is the path prefix, "/openai"; it is removed before forwarding.
	Prefix string
	// Upstream is the base URL requests are forwarded to, "https://api.openai.com".
	Upstream string
	API      API
	// Provider is the provider name of the route's events (default: the API's name), e.g.
	// "azure" for Azure OpenAI or "groq" for Groq's OpenAI-compatible API.
	Provider string
}

// DefaultRoutes proxy OpenAI at /openai and Anthropic at /anthropic.
var DefaultRoutes = []Route{
	{Prefix: "/openai", Upstream: "https://api.openai.com", API: APIOpenAI},
	{Prefix: "/anthropic", Upstream: "https://api.anthropic.com", API: APIAnthropic},
}

// Emitter takes the events the proxy reads. *emit.Emitter is one: it never blocks and keeps
// events while the pipeline is down, so the proxy serves traffic whatever the pipeline's
// state.
type Emitter interface {
	Emit(event.Usage) error
}

// DefaultMaxCapture bounds the response bytes held to read a non-streamed usage.
const DefaultMaxCapture = 16 << 20

// DefaultAddr is where the proxy listens by default.
const DefaultAddr = "127.0.0.1:8081"

// Defaults of the bounds on requests and upstreams.
const (
	// DefaultResponseHeaderTimeout is the OpenAI and Anthropic SDKs' own default request
	// timeout (10 minutes): the proxy never gives up on a call its client still waits for. A
	// non-streamed call to a reasoning model sends its headers only once the whole answer is
	// written, which takes minutes; a streamed one sends them at once.
	DefaultResponseHeaderTimeout = 10 * time.Minute
	// DefaultMaxBodies is how many request bodies are read at once.
	DefaultMaxBodies = 1024
	// DefaultBodyTimeout is how long a request body may take to arrive (prompts with images
	// run to tens of MB).
	DefaultBodyTimeout = 2 * time.Minute
)

// Config configures a Proxy. Zero values take the documented defaults.
type Config struct {
	// Addr is the listen address of Run (default DefaultAddr).
	Addr string
	// Routes default to DefaultRoutes.
	Routes []Route
	// Emitter receives the events; required.
	Emitter Emitter
	// Bindings attribute calls by API key (default none).
	Bindings *Bindings
	// Transport sends requests upstream (default a clone of http.DefaultTransport, with
	// ResponseHeaderTimeout).
	Transport http.RoundTripper
	// ResponseHeaderTimeout bounds the wait for an upstream's response headers (default
	// DefaultResponseHeaderTimeout); past it the call is answered 502. It applies to the
	// default Transport only.
	ResponseHeaderTimeout time.Duration
	// MaxBodies bounds the request bodies read at once (default DefaultMaxBodies); a request
	// beyond it is answered 503 with Retry-After, unread. BodyTimeout bounds the time one
	// may take to arrive (default DefaultBodyTimeout).
	MaxBodies   int
	BodyTimeout time.Duration
	// Budgets, when set, refuses the metered calls of a scope over a budget hard cap under
	// policy refuse — answered 429 before they are forwarded, so they are never paid for —
	// and tags those of a scope under policy flag.
	Budgets *budget.Enforcer
	// InjectStreamUsage adds stream_options.include_usage to streamed Chat Completions
	// requests that do not set it, so that their usage can be metered (see
	// injectStreamUsage). It is off by default because it changes the request and adds a
	// final chunk to the stream; without it such streams are forwarded, counted as
	// no_usage, and emitted with estimated tokens (escape.go).
	InjectStreamUsage bool
	// MaxCapture bounds the bytes of a non-streamed (or compressed) response held to read
	// its usage (default DefaultMaxCapture); a larger response is forwarded but not metered,
	// and counted.
	MaxCapture int64
	// Registerer receives the proxy's metrics (default a private registry); Gatherer serves
	// /metrics (default Registerer when it is a Gatherer).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Logger receives the proxy's logs (default discards them).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (cfg Config) withDefaults() Config {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if len(cfg.Routes) == 0 {
		cfg.Routes = DefaultRoutes
	}
	if cfg.ResponseHeaderTimeout == 0 {
		cfg.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if cfg.MaxBodies == 0 {
		cfg.MaxBodies = DefaultMaxBodies
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
		// Every call of a service goes to one upstream host: keep enough idle connections
		// to it that a busy proxy does not open a TLS connection per call (the default is 2).
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 1024, 256
		cfg.Transport = t
	}
	if cfg.MaxCapture == 0 {
		cfg.MaxCapture = DefaultMaxCapture
	}
	if cfg.Registerer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	if cfg.Gatherer == nil {
		if g, ok := cfg.Registerer.(prometheus.Gatherer); ok {
			cfg.Gatherer = g
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// Validate reports every invalid value of cfg, after defaults are applied.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.Emitter == nil {
		errs = append(errs, errors.New("emitter is nil"))
	}
	if cfg.MaxCapture < 1 {
		errs = append(errs, fmt.Errorf("max capture (%d) must be positive", cfg.MaxCapture))
	}
	if cfg.ResponseHeaderTimeout < 0 || cfg.BodyTimeout < 0 {
		errs = append(errs, fmt.Errorf("response header timeout (%s) and body timeout (%s) must be positive", cfg.ResponseHeaderTimeout, cfg.BodyTimeout))
	}
	if cfg.MaxBodies < 1 {
		errs = append(errs, fmt.Errorf("max bodies (%d) must be positive", cfg.MaxBodies))
	}
	if cfg.Gatherer == nil {
		errs = append(errs, fmt.Errorf("gatherer is nil and the registerer (%T) is not a prometheus.Gatherer", cfg.Registerer))
	}
	seen := map[string]bool{}
	for i, r := range cfg.Routes {
		if !strings.HasPrefix(r.Prefix, "/") || strings.HasSuffix(r.Prefix, "/") || len(r.Prefix) < 2 {
			errs = append(errs, fmt.Errorf("routes[%d]: prefix %q must start with '/', not end with one, and name something", i, r.Prefix))
		}
		switch r.Prefix {
		case "/healthz", "/readyz", "/metrics":
			errs = append(errs, fmt.Errorf("routes[%d]: prefix %q is the proxy's own endpoint", i, r.Prefix))
		}
		if seen[r.Prefix] {
			errs = append(errs, fmt.Errorf("routes[%d]: prefix %q is used twice", i, r.Prefix))
		}
		seen[r.Prefix] = true
		if u, err := url.Parse(r.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("routes[%d]: upstream %q is not an http(s) URL", i, r.Upstream))
		}
		if r.API != APIOpenAI && r.API != APIAnthropic {
			errs = append(errs, fmt.Errorf("routes[%d]: api %q is not one of openai, anthropic", i, r.API))
		}
	}
	return errors.Join(errs...)
}

// Proxy is the reverse proxy. It is an http.Handler.
type Proxy struct {
	cfg     Config
	buffers bufferPool
	routes  []*route
	mux     *http.ServeMux
	handler http.Handler // mux behind the bound on bodies
	metrics *metrics
	addr    atomic.Pointer[string]
}

type route struct {
	Route
	upstream *url.URL
	rp       *httputil.ReverseProxy
}

// callKey keys the per-request call in the request context, from ServeHTTP to the response.
type callKey struct{}

// call is what the proxy knows about one metered request.
type call struct {
	route     *route
	format    normalize.Format
	operation string
	start     time.Time
	attr      attribution
	// body holds the request as it went upstream, to estimate a call that escapes metering.
	body *requestBody
}

// New builds a proxy.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid proxy config: %w", err)
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if err := cfg.Budgets.Register(cfg.Registerer); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, metrics: m, mux: http.NewServeMux()}
	for _, r := range cfg.Routes {
		rt := &route{Route: r}
		rt.upstream, _ = url.Parse(r.Upstream) // checked by Validate
		if rt.Provider == "" {
			rt.Provider = string(r.API)
		}
		rt.rp = &httputil.ReverseProxy{
			Rewrite:        func(pr *httputil.ProxyRequest) { p.rewrite(rt, pr) },
			Transport:      cfg.Transport,
			FlushInterval:  -1, // flush every write: streams pass through chunk by chunk
			ModifyResponse: p.modifyResponse,
			ErrorHandler:   p.upstreamError,
			ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
			BufferPool:     &p.buffers,
		}
		p.routes = append(p.routes, rt)
		p.mux.Handle(r.Prefix+"/", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { p.serve(rt, w, req) }))
	}
	p.handler = guard.Bodies(p.mux, cfg.MaxBodies, cfg.BodyTimeout, func(w http.ResponseWriter, r *http.Request) {
		p.metrics.upstreamErrors.WithLabelValues("busy").Inc()
		answer(w, p.apiOf(r), refusal{status: http.StatusServiceUnavailable, kind: "tokenmeter_proxy_error", code: "proxy_busy", retryAfter: "1",
			message: fmt.Sprintf("tokenmeter proxy: %d request bodies are being read, the limit: send this request again later", cfg.MaxBodies)})
	})
	return p, nil
}

// ServeHTTP proxies r by its route. A path with dot segments, plain or encoded, is answered
// 400 and not forwarded (dotSegments).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if dotSegments(r.URL.Path) {
		answer(w, p.apiOf(r), refusal{status: http.StatusBadRequest, kind: "invalid_request_error", code: "invalid_path",
			message: "tokenmeter proxy: the path has a '.' or '..' segment, plain or percent-encoded; it is not forwarded"})
		return
	}
	p.handler.ServeHTTP(w, r)
}

// OpsHandler serves /healthz, /readyz and /metrics, which the proxy's own address does not:
// they are for its operators, not its clients.
func (p *Proxy) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	ops.Register(mux, p.cfg.Gatherer)
	return mux
}

func (p *Proxy) serve(rt *route, w http.ResponseWriter, r *http.Request) {
	format, op, metered := meteredPath(rt.API, r.Method, strings.TrimPrefix(r.URL.Path, rt.Prefix))
	p.metrics.requests.WithLabelValues(rt.Prefix, boolLabel(metered)).Inc()
	if metered {
		c := &call{route: rt, format: format, operation: op, start: p.cfg.Now(), attr: attribute(r.Header, p.cfg.Bindings)}
		if c.attr.dropped > 0 {
			p.metrics.droppedTags.Add(float64(c.attr.dropped))
		}
		// Budget hard caps, before the call is forwarded and paid for.
		tags, refused := p.cfg.Budgets.Decide(c.attr.tags, c.attr.workflowID)
		if refused != "" {
			p.metrics.outcomes.WithLabelValues("budget_refused").Inc()
			answer(w, rt.API, refusal{status: http.StatusTooManyRequests, kind: budgetErrorType(rt.API), code: "budget_exceeded",
				message: "tokenmeter proxy: " + refused})
			return
		}
		c.attr.tags = tags
		if p.cfg.InjectStreamUsage && format == normalize.OpenAIChat && op == normalize.OperationChat {
			injected, err := injectStreamUsage(r, p.cfg.MaxCapture)
			if errors.Is(err, guard.ErrBodyTimeout) {
				p.metrics.upstreamErrors.WithLabelValues("body_timeout").Inc()
				answer(w, rt.API, refusal{status: http.StatusRequestTimeout, kind: "invalid_request_error", code: "body_timeout",
					message: fmt.Sprintf("tokenmeter proxy: the request body did not arrive within %s", p.cfg.BodyTimeout)})
				return
			}
			if err != nil {
				p.metrics.upstreamErrors.WithLabelValues("client_gone").Inc()
				http.Error(w, "read the request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			if injected {
				p.metrics.injected.Inc()
			}
		}
		c.body = newRequestBody(r.Body, p.cfg.MaxCapture)
		r.Body = c.body
		r = r.WithContext(context.WithValue(r.Context(), callKey{}, c))
	}
	rt.rp.ServeHTTP(w, r)
}

// meteredPath says whether a request's response carries usage, and how to read it.
func meteredPath(api API, method, path string) (normalize.Format, string, bool) {
	if method != http.MethodPost {
		return 0, "", false
	}
	path = strings.TrimSuffix(path, "/")
	switch api {
	case APIOpenAI:
		switch {
		case strings.HasSuffix(path, "/chat/completions"):
			return normalize.OpenAIChat, normalize.OperationChat, true
		case strings.HasSuffix(path, "/responses"):
			return normalize.OpenAIResponses, normalize.OperationResponses, true
		case strings.HasSuffix(path, "/embeddings"):
			// Embeddings report prompt_tokens like chat completions do.
			return normalize.OpenAIChat, "embeddings", true
		}
	case APIAnthropic:
		if strings.HasSuffix(path, "/v1/messages") {
			return normalize.Anthropic, normalize.OperationChat, true
		}
	}
	return 0, "", false
}

// rewrite builds the upstream request: the route's upstream, the path without the prefix, the
// attribution headers removed.
func (p *Proxy) rewrite(rt *route, pr *httputil.ProxyRequest) {
	pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, rt.Prefix)
	if pr.In.URL.RawPath != "" {
		pr.Out.URL.RawPath = strings.TrimPrefix(pr.In.URL.RawPath, rt.Prefix)
	}
	pr.SetURL(rt.upstream)
	stripHeaders(pr.Out.Header)
	if _, metered := pr.In.Context().Value(callKey{}).(*call); metered {
		narrowEncoding(pr.Out.Header)
	}
}

// narrowEncoding keeps gzip, the one content coding the proxy decodes, in Accept-Encoding.
// Without the header at all, Go's transport asks for gzip itself and decodes it.
func narrowEncoding(h http.Header) {
	ae := h.Values("Accept-Encoding")
	if len(ae) == 0 {
		return
	}
	for _, v := range ae {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") && !refused(params) {
				h.Set("Accept-Encoding", "gzip")
				return
			}
		}
	}
	h.Set("Accept-Encoding", "identity")
}

// refused says whether Accept-Encoding parameters give a coding the weight q=0.
func refused(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err != nil || q <= 0
		}
	}
	return false
}

// modifyResponse puts a tap on the body of a metered, successful response.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	c, ok := resp.Request.Context().Value(callKey{}).(*call)
	if !ok {
		return nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		p.metrics.outcomes.WithLabelValues("upstream_error").Inc()
		return nil
	}
	resp.Body = p.newTap(c, resp)
	return nil
}

// upstreamError answers 502 when the upstream cannot be reached or does not answer in time,
// in the route's error shape. The answer is generic: the error names the upstream's address
// and the proxy's network, which are the operators' business (the log has it), not the
// client's.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	// The request's context is canceled when the client hangs up, and also when its body is
	// late; then the transport may report either the cancellation or the body's error
	// (guard.TimedOut), and it reports a client hanging up mid-body as a failed write as
	// often as a cancellation. The guard says whether the body was late; if not, a canceled
	// context is a client gone, whatever the error.
	late := guard.TimedOut(r.Context()) || errors.Is(err, guard.ErrBodyTimeout)
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	if c, ok := r.Context().Value(callKey{}).(*call); ok && !late {
		p.escapedUnanswered(c, timeout, r.Context().Err() != nil)
	}
	if !late && r.Context().Err() != nil {
		p.metrics.upstreamErrors.WithLabelValues("client_gone").Inc()
		return // the client hung up; nobody is listening for the answer
	}
	ref := refusal{status: http.StatusBadGateway, kind: "tokenmeter_proxy_error", code: "upstream_unreachable",
		message: "tokenmeter proxy: the upstream could not be reached"}
	switch {
	case late:
		// The client's body, not the upstream, was late.
		ref = refusal{status: http.StatusRequestTimeout, kind: "invalid_request_error", code: "body_timeout",
			message: fmt.Sprintf("tokenmeter proxy: the request body did not arrive within %s", p.cfg.BodyTimeout)}
	case timeout:
		ref.code, ref.message = "upstream_timeout", "tokenmeter proxy: the upstream did not answer in time"
	}
	p.metrics.upstreamErrors.WithLabelValues(strings.TrimPrefix(ref.code, "upstream_")).Inc() // unreachable, timeout, body_timeout
	p.cfg.Logger.Warn("upstream request failed", "path", r.URL.Path, "err", err)
	api := APIOpenAI
	if c, ok := r.Context().Value(callKey{}).(*call); ok {
		api = c.route.API
	} else {
		api = p.apiOf(r)
	}
	if api == APIAnthropic {
		ref.kind = "api_error"
	}
	answer(w, api, ref)
}

// budgetErrorType is the error type of a refusal under a budget cap: the one each API uses
// for running out of what the caller may spend.
func budgetErrorType(api API) string {
	if api == APIAnthropic {
		return "rate_limit_error"
	}
	return "insufficient_quota"
}

// emit completes the event read from a response and hands it to the emitter.
func (p *Proxy) emit(c *call, u event.Usage, end time.Time) {
	if p.send(c, u, end) {
		p.metrics.outcomes.WithLabelValues("emitted").Inc()
	}
}

// send completes an event and hands it to the emitter, counting the outcome only when it
// fails; it reports whether the emitter took it.
func (p *Proxy) send(c *call, u event.Usage, end time.Time) bool {
	u.Provider = c.route.Provider
	u.Operation = c.operation
	u.ID = eventID(c.route.Provider, u.ResponseID)
	u.Time = c.start
	if lat := end.Sub(c.start).Milliseconds(); lat >= 0 && lat <= event.MaxLatency {
		u.LatencyMS = lat
	}
	if len(c.attr.tags) > 0 {
		if u.Tags == nil {
			u.Tags = make(map[string]string, len(c.attr.tags))
		}
		for k, v := range c.attr.tags {
			u.Tags[k] = v
		}
	}
	u.WorkflowID, u.PromptVersion = c.attr.workflowID, c.attr.promptVersion
	if err := p.cfg.Emitter.Emit(u); err != nil {
		var fe *event.FieldError
		outcome := "dropped"
		if errors.As(err, &fe) {
			outcome = "invalid"
		}
		p.metrics.outcomes.WithLabelValues(outcome).Inc()
		p.cfg.Logger.Warn("usage event not emitted", "id", u.ID, "model", u.Model, "err", err)
		return false
	}
	return true
}

// eventID derives the event id from the provider's response id, so that the same call
// reported twice by the proxy is counted once; a response without an id gets a random one.
func eventID(provider, responseID string) string {
	if responseID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		return "proxy-" + provider + "-" + hex.EncodeToString(b[:])
	}
	id := "proxy-" + provider + "-" + responseID
	if len(id) <= event.DefaultLimits.MaxID && cleanString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(responseID))
	return "proxy-" + provider + "-sha256-" + hex.EncodeToString(sum[:])
}

// Addr is the address Run listens on, or "" before it listens.
func (p *Proxy) Addr() string {
	if a := p.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Run listens on Config.Addr and serves until ctx ends.
func (p *Proxy) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", p.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", p.cfg.Addr, err)
	}
	return p.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then lets in-flight calls (streams included) finish for
// up to a minute. Serve closes ln.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr().String()
	p.addr.Store(&addr)
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute} // bodies: guard.Bodies
	p.cfg.Logger.Info("proxy listening", "addr", addr, "routes", len(p.routes))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve HTTP on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down the proxy on %s: %w", addr, err)
	}
	return nil
}

// bufferPool recycles the reverse proxy's copy buffers (32 KiB per request otherwise).
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
