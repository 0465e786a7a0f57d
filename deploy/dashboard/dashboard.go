// Package dashboard serves tokenmeter's built-in web page and the small JSON API it reads:
// spend from ClickHouse's roll-ups (through deploy/summary) and the alerter's active alerts and
// budgets from their JetStream key-value buckets. The API is documented in README.md beside
// this file; the page's static assets are built from web/ and embedded, so serving them needs
// neither npm nor the internet.
package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
)

//go:embed static
var static embed.FS

// Config configures the dashboard.
type Config struct {
	// Database is the ClickHouse database holding spend_1d.
	Database string
	// Now tells the time; the current day ends every default range. Default time.Now.
	Now func() time.Time
	// QueryTimeout bounds each API request's reads. Default 30s.
	QueryTimeout time.Duration
	Logger       *slog.Logger
	// Hosts are the names, besides localhost and IP addresses, that a request may carry in
	// its Host header; a request for any other name is answered 421. This defeats DNS
	// rebinding: a page of evil.example whose name the attacker makes resolve to 127.0.0.1
	// reaches the dashboard with "Host: evil.example", and is refused before it reads
	// anything. An IP address in Host is not a name anyone can rebind.
	Hosts []string
	// Token, when set, is required of every request, as "Authorization: Bearer <token>" or as
	// the password of HTTP basic authentication with any user name (which a browser asks for
	// once and then sends with every request of the page). Missing or wrong: 401.
	Token string
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if err := migrate.ValidDatabase(c.Database); err != nil {
		errs = append(errs, err)
	}
	if c.QueryTimeout < 0 {
		errs = append(errs, fmt.Errorf("query timeout (%s) must not be negative", c.QueryTimeout))
	}
	for _, h := range c.Hosts {
		if h == "" || strings.ContainsAny(h, "/:@ \t") {
			errs = append(errs, fmt.Errorf("host %q: want a host name without port, e.g. dashboard.example.com", h))
		}
	}
	return errors.Join(errs...)
}

// Server answers the page and the API.
type Server struct {
	cfg  Config
	conn driver.Conn
	js   jetstream.JetStream
	mux  *http.ServeMux
}

// New returns a dashboard reading spend through conn and alerts and budgets through js (nil:
// none are shown).
func New(cfg Config, conn driver.Conn, js jetstream.JetStream) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dashboard config: %w", err)
	}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("embedded dashboard assets: %w", err)
	}
	s := &Server{cfg: cfg, conn: conn, js: js, mux: http.NewServeMux()}
	s.mux.Handle("GET /", http.FileServerFS(assets))
	s.mux.HandleFunc("GET /api/v1/spend", s.api(s.spend, append([]string{"by", "from", "to", "days", "limit"}, summary.Dimensions()...)))
	s.mux.HandleFunc("GET /api/v1/daily", s.api(s.daily, append([]string{"by", "from", "to", "days", "limit"}, summary.Dimensions()...)))
	s.mux.HandleFunc("GET /api/v1/trend", s.api(s.trend, append([]string{"days"}, summary.Dimensions()...)))
	s.mux.HandleFunc("GET /api/v1/movers", s.api(s.movers, append([]string{"by", "days", "limit"}, summary.Dimensions()...)))
	s.mux.HandleFunc("GET /api/v1/unpriced", s.api(s.unpriced, append([]string{"from", "to", "days"}, summary.Dimensions()...)))
	s.mux.HandleFunc("GET /api/v1/coverage", s.api(s.coverage, append([]string{"from", "to", "days"}, summary.Dimensions()...)))
	s.mux.HandleFunc("GET /api/v1/metered", s.api(s.metered, append([]string{"by", "from", "to", "days", "limit"}, summary.Dimensions()...)))
	s.mux.HandleFunc("GET /api/v1/alerts", s.api(s.alerts, nil))
	s.mux.HandleFunc("GET /api/v1/budgets", s.api(s.budgets, nil))
	return s, nil
}

// ServeHTTP serves the page under / and the API under /api/v1/, to requests for an allowed
// host (Config.Hosts) that carry the token when one is set (Config.Token).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
	if !s.hostAllowed(r.Host) {
		refuse(w, http.StatusMisdirectedRequest, "this dashboard does not serve host "+strconv.Quote(r.Host))
		return
	}
	if s.cfg.Token != "" && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="tokenmeter dashboard", charset="UTF-8"`)
		refuse(w, http.StatusUnauthorized, "authentication required")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// hostAllowed reports whether a request's Host header names this dashboard: an IP address,
// localhost (or a name under .localhost, which resolvers keep on loopback), or one of
// Config.Hosts.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	switch {
	case host == "":
		return false
	case net.ParseIP(host) != nil, host == "localhost", strings.HasSuffix(host, ".localhost"):
		return true
	}
	return slices.ContainsFunc(s.cfg.Hosts, func(h string) bool { return strings.EqualFold(strings.TrimSuffix(h, "."), host) })
}

// authorized reports whether r carries the token, compared in constant time.
func (s *Server) authorized(r *http.Request) bool {
	got, ok := "", false
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "Bearer ") {
		got, ok = a[7:], true
	} else {
		_, got, ok = r.BasicAuth()
	}
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Serve serves the dashboard on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 2 * s.cfg.QueryTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	err := srv.Serve(ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve the dashboard on %s: %w", ln.Addr(), err)
}

// badRequest is an error in the request's parameters (400); any other error is the server's.
type badRequest struct{ error }

// query is a request's validated parameters.
type query struct {
	values url.Values
	now    time.Time
}

// api wraps an endpoint: it rejects parameters not in allowed (a typo would otherwise be a
// silently ignored filter), bounds the time the endpoint may take and writes its answer or
// error as JSON.
func (s *Server) api(fn func(context.Context, query) (any, error), allowed []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		values := r.URL.Query()
		var errs []error
		for k, v := range values {
			if !slices.Contains(allowed, k) {
				errs = append(errs, fmt.Errorf("unknown parameter %q", k))
			} else if len(v) != 1 {
				errs = append(errs, fmt.Errorf("parameter %q given %d times", k, len(v)))
			}
		}
		var out any
		err := errors.Join(errs...)
		if err != nil {
			err = badRequest{err}
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
			out, err = fn(ctx, query{values: values, now: s.cfg.Now()})
			cancel()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err != nil {
			status := http.StatusInternalServerError
			var br badRequest
			if errors.As(err, &br) {
				status = http.StatusBadRequest
			} else {
				s.cfg.Logger.Warn("dashboard API", "path", r.URL.Path, "err", err)
			}
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(out)
	}
}

// filter is the request's dimension parameters.
func (q query) filter() summary.Filter {
	f := summary.Filter{}
	for _, d := range summary.Dimensions() {
		if v := q.values.Get(d); v != "" {
			f[d] = v
		}
	}
	return f
}

// by is the "by" parameter, def when absent; with tags, also a tag beyond the dimensions
// (summary.TagPrefix and its key).
func (q query) by(def string, tags bool) (string, error) {
	by := q.values.Get("by")
	if by == "" {
		return def, nil
	}
	if tags && strings.HasPrefix(by, summary.TagPrefix) {
		return by, nil // summary.Breakdown checks the key
	}
	if !slices.Contains(summary.Dimensions(), by) {
		return "", badRequest{fmt.Errorf("by %q: want one of %v", by, summary.Dimensions())}
	}
	return by, nil
}

// number is an integer parameter within lo..hi, def when absent.
func (q query) number(name string, def, lo, hi int) (int, error) {
	v := q.values.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest{fmt.Errorf("%s %q: want an integer within %d..%d", name, v, lo, hi)}
	}
	return n, nil
}

// dateRange is from..to (YYYY-MM-DD, inclusive), or the given number of days ending today;
// by default the 30 days ending today.
func (q query) dateRange() (summary.Range, error) {
	r := summary.Days(q.now, 30)
	var errs []error
	if q.values.Get("days") != "" {
		if q.values.Get("from") != "" || q.values.Get("to") != "" {
			return r, badRequest{errors.New("give either days or from/to, not both")}
		}
		n, err := q.number("days", 30, 1, 3*366)
		if err != nil {
			return r, err
		}
		return summary.Days(q.now, n), nil
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &r.From}, {"to", &r.To}} {
		v := q.values.Get(p.name)
		if v == "" {
			continue
		}
		d, err := time.Parse(time.DateOnly, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want a date YYYY-MM-DD", p.name, v))
			continue
		}
		*p.dst = d
	}
	if q.values.Get("from") == "" && q.values.Get("to") != "" {
		r.From = r.To.AddDate(0, 0, -29)
	}
	if err := errors.Join(errs...); err != nil {
		return r, badRequest{err}
	}
	if err := r.Validate(); err != nil {
		return r, badRequest{err}
	}
	return r, nil
}

// Spend is the answer of /api/v1/spend.
type Spend struct {
	By    string         `json:"by"`
	From  string         `json:"from"`
	To    string         `json:"to"`
	Lines []summary.Line `json:"lines"`
}

func (s *Server) spend(ctx context.Context, q query) (any, error) {
	by, err1 := q.by("team", true)
	r, err2 := q.dateRange()
	limit, err3 := q.number("limit", 10, 1, 1000)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, badRequest{err}
	}
	if tag, ok := strings.CutPrefix(by, summary.TagPrefix); ok {
		if err := summary.ValidTag(tag); err != nil {
			return nil, badRequest{err}
		}
	}
	lines, err := summary.Breakdown(ctx, s.conn, s.cfg.Database, by, r, q.filter(), limit)
	return Spend{By: by, From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly), Lines: lines}, err
}

// Daily is the answer of /api/v1/daily.
type Daily struct {
	By string `json:"by"`
	summary.Daily
}

func (s *Server) daily(ctx context.Context, q query) (any, error) {
	by, err1 := q.by("model", false)
	r, err2 := q.dateRange()
	limit, err3 := q.number("limit", 8, 1, 100)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, badRequest{err}
	}
	d, err := summary.ByDay(ctx, s.conn, s.cfg.Database, by, r, q.filter(), limit)
	return Daily{By: by, Daily: d}, err
}

// Trend is the answer of /api/v1/trend: the spend of each of the trailing days (today last)
// against the same number of days before them.
type Trend struct {
	Days          []string `json:"days"`
	Cost          []string `json:"cost_usd"`
	Total         string   `json:"total_usd"`
	PreviousTotal string   `json:"previous_total_usd"`
	// ChangePct is the change of Total against PreviousTotal in percent ("" when the previous
	// period spent nothing).
	ChangePct string `json:"change_pct"`
}

func (s *Server) trend(ctx context.Context, q query) (any, error) {
	n, err := q.number("days", 7, 1, 366)
	if err != nil {
		return nil, err
	}
	cur := summary.Days(q.now, n)
	d, err := summary.ByDay(ctx, s.conn, s.cfg.Database, "total", summary.Range{From: cur.From.AddDate(0, 0, -n), To: cur.To}, q.filter(), 1)
	if err != nil {
		return nil, err
	}
	t := Trend{Days: d.Days[n:], Cost: make([]string, n)}
	prev, total := decimal.Zero, decimal.Zero
	for i := range n {
		t.Cost[i] = "0"
	}
	if len(d.Series) == 1 {
		for i, c := range d.Series[0].Cost {
			if i < n {
				prev = prev.Add(c)
			} else {
				t.Cost[i-n] = c.String()
				total = total.Add(c)
			}
		}
	}
	t.Total, t.PreviousTotal = total.String(), prev.String()
	t.ChangePct = summary.Percent(total.Sub(prev), prev)
	return t, nil
}

// Movers is the answer of /api/v1/movers.
type Movers struct {
	By     string          `json:"by"`
	Days   int             `json:"days"`
	Movers []summary.Mover `json:"movers"`
}

func (s *Server) movers(ctx context.Context, q query) (any, error) {
	by, err1 := q.by("team", false)
	n, err2 := q.number("days", 7, 1, 366)
	limit, err3 := q.number("limit", 10, 1, 1000)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, badRequest{err}
	}
	m, err := summary.Movers(ctx, s.conn, s.cfg.Database, by, q.now, n, q.filter(), limit)
	return Movers{By: by, Days: n, Movers: m}, err
}

// Unpriced is the answer of /api/v1/unpriced.
type Unpriced struct {
	From   string                  `json:"from"`
	To     string                  `json:"to"`
	Models []summary.UnpricedModel `json:"models"`
}

func (s *Server) unpriced(ctx context.Context, q query) (any, error) {
	r, err := q.dateRange()
	if err != nil {
		return nil, err
	}
	m, err := summary.Unpriced(ctx, s.conn, s.cfg.Database, r, q.filter())
	return Unpriced{From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly), Models: m}, err
}

// CoverageAnswer is the answer of /api/v1/coverage.
type CoverageAnswer struct {
	From string `json:"from"`
	To   string `json:"to"`
	summary.Coverage
}

func (s *Server) coverage(ctx context.Context, q query) (any, error) {
	r, err := q.dateRange()
	if err != nil {
		return nil, err
	}
	c, err := summary.CoverageOf(ctx, s.conn, s.cfg.Database, r, q.filter())
	return CoverageAnswer{From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly), Coverage: c}, err
}

// Metered is the answer of /api/v1/metered.
type Metered struct {
	By    string                `json:"by"`
	From  string                `json:"from"`
	To    string                `json:"to"`
	Lines []summary.MeteredLine `json:"lines"`
}

// metered is the metered share by a dimension: the calls the proxy had to estimate beside all.
func (s *Server) metered(ctx context.Context, q query) (any, error) {
	by, err1 := q.by("team", false)
	r, err2 := q.dateRange()
	limit, err3 := q.number("limit", 10, 1, 1000)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, badRequest{err}
	}
	lines, err := summary.MeteredShare(ctx, s.conn, s.cfg.Database, by, r, q.filter(), limit)
	return Metered{By: by, From: r.From.Format(time.DateOnly), To: r.To.Format(time.DateOnly), Lines: lines}, err
}

// AlertsAnswer is the answer of /api/v1/alerts.
type AlertsAnswer struct {
	Alerts  []Alert   `json:"alerts"`
	Invalid []Invalid `json:"invalid"`
}

func (s *Server) alerts(ctx context.Context, _ query) (any, error) {
	a, invalid, err := Alerts(ctx, s.js)
	return AlertsAnswer{Alerts: a, Invalid: invalid}, err
}

// BudgetsAnswer is the answer of /api/v1/budgets.
type BudgetsAnswer struct {
	Budgets []Budget  `json:"budgets"`
	Invalid []Invalid `json:"invalid"`
}

func (s *Server) budgets(ctx context.Context, _ query) (any, error) {
	b, invalid, err := Budgets(ctx, s.js)
	return BudgetsAnswer{Budgets: b, Invalid: invalid}, err
}
