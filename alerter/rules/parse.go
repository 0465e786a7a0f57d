package rules

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// MaxFileBytes bounds a rules file; anything larger is refused before it is parsed.
const MaxFileBytes = 1 << 20

// Limits on what one file may hold.
const (
	maxRules   = 1000
	maxWindow  = 24 * time.Hour
	maxPeriods = 12
	maxDays    = 35
	maxFor     = 7 * 24 * time.Hour
)

// Built-in rule names. They are on unless the file turns them off under `builtins:`; a rule
// of the file with the same name replaces the built-in one.
const (
	BuiltinUnpricedModel = "unpriced_model"
	BuiltinUntaggedShare = "untagged_share"
	BuiltinTeamSpike     = "team_spike"
	BuiltinTierFallback  = "tier_fallback"
	// BuiltinBillingDrift compares the meter with the providers' bills (File.BillingDrift).
	BuiltinBillingDrift = "billing_drift"
)

// Defaults of the route.
const (
	DefaultGroupWait      = 3 * time.Second
	DefaultGroupInterval  = time.Minute
	DefaultRepeatInterval = 4 * time.Hour
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

type rawFile struct {
	Builtins  map[string]bool  `yaml:"builtins"`
	Rules     []rawRule        `yaml:"rules"`
	Budgets   []rawBudget      `yaml:"budgets"`
	Route     rawRoute         `yaml:"route"`
	Receivers []rawReceiver    `yaml:"receivers"`
	Silences  []rawSilence     `yaml:"silences"`
	Inhibit   []rawInhibitRule `yaml:"inhibit_rules"`
	LinkURL   string           `yaml:"link_url"`
	Drift     rawBillingDrift  `yaml:"billing_drift"`
}

type rawBillingDrift struct {
	AbovePercent string `yaml:"above_percent"`
	MinUSD       string `yaml:"min_usd"`
	Days         int    `yaml:"days"`
	Severity     string `yaml:"severity"`
}

type rawRule struct {
	Name           string            `yaml:"name"`
	Kind           string            `yaml:"kind"`
	Measure        string            `yaml:"measure"`
	GroupBy        []string          `yaml:"group_by"`
	Window         string            `yaml:"window"`
	Above          string            `yaml:"above"`
	ShareOf        string            `yaml:"share_of"`
	AbovePercent   string            `yaml:"above_percent"`
	Period         string            `yaml:"period"`
	Periods        int               `yaml:"periods"`
	MinPeriods     int               `yaml:"min_periods"`
	Factor         string            `yaml:"factor"`
	Score          string            `yaml:"score"`
	Days           int               `yaml:"days"`
	MinHistory     int               `yaml:"min_history"`
	GrowthPercent  string            `yaml:"growth_percent"`
	MinValue       string            `yaml:"min_value"`
	MinSharePct    string            `yaml:"min_share_percent"`
	For            string            `yaml:"for"`
	KeepFiringFor  string            `yaml:"keep_firing_for"`
	ResolvePercent *int64            `yaml:"resolve_percent"`
	Severity       string            `yaml:"severity"`
	Labels         map[string]string `yaml:"labels"`
	Description    string            `yaml:"description"`
	// Runaway rules.
	MinUSD       string `yaml:"min_usd"`
	MinWorkflows int    `yaml:"min_workflows"`
	Cap          bool   `yaml:"cap"`
}

type rawBudget struct {
	Name           string            `yaml:"name"`
	Scope          map[string]string `yaml:"scope"`
	Period         string            `yaml:"period"`
	PeriodStart    string            `yaml:"period_start"`
	PeriodDays     int               `yaml:"period_days"`
	LimitUSD       string            `yaml:"limit_usd"`
	AlertAtPercent []int64           `yaml:"alert_at_percent"`
	HardCapPercent int64             `yaml:"hard_cap_percent"`
	Policy         string            `yaml:"policy"`
	Severity       string            `yaml:"severity"`
	// ForecastAlertPercent is the probability of ending over the limit at which
	// budget_forecast fires (seasonal forecast).
	ForecastAlertPercent string `yaml:"forecast_alert_percent"`
}

type rawRoute struct {
	GroupBy        []string `yaml:"group_by"`
	GroupWait      string   `yaml:"group_wait"`
	GroupInterval  string   `yaml:"group_interval"`
	RepeatInterval string   `yaml:"repeat_interval"`
}

// rawReceiver: each secret (a webhook's URL and bearer token, a Slack webhook URL, a PagerDuty
// routing key) may be given in the file, or read from a file (_file) or an environment
// variable (_env), so that the rules file itself holds none and can be committed.
type rawReceiver struct {
	Name    string            `yaml:"name"`
	Match   map[string]string `yaml:"match"`
	Webhook *struct {
		URL             string `yaml:"url"`
		URLFile         string `yaml:"url_file"`
		URLEnv          string `yaml:"url_env"`
		BearerToken     string `yaml:"bearer_token"`
		BearerTokenFile string `yaml:"bearer_token_file"`
		BearerTokenEnv  string `yaml:"bearer_token_env"`
	} `yaml:"webhook"`
	Slack *struct {
		URL     string `yaml:"url"`
		URLFile string `yaml:"url_file"`
		URLEnv  string `yaml:"url_env"`
		Channel string `yaml:"channel"`
	} `yaml:"slack"`
	PagerDuty *struct {
		URL            string `yaml:"url"`
		RoutingKey     string `yaml:"routing_key"`
		RoutingKeyFile string `yaml:"routing_key_file"`
		RoutingKeyEnv  string `yaml:"routing_key_env"`
	} `yaml:"pagerduty"`
	Alertmanager *struct {
		URL string `yaml:"url"`
	} `yaml:"alertmanager"`
}

type rawSilence struct {
	Matchers map[string]string `yaml:"matchers"`
	EndsAt   string            `yaml:"ends_at"`
	Comment  string            `yaml:"comment"`
}

// DefaultPagerDutyURL is the Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Parse decodes and validates a rules file; name labels errors, and a receiver's secret file
// (url_file, routing_key_file, bearer_token_file) given as a relative path is read relative
// to name's directory. Every problem is reported, joined, each as
// `name: rules[2] "team-hourly": window: "90x": not a duration`; no error shows a secret.
// An empty document is valid: the built-in rules with the default route and no receivers.
func Parse(name string, data []byte) (*File, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%s: %d bytes, more than the limit of %d", name, len(data), MaxFileBytes)
	}
	raw, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &parser{name: name, dir: filepath.Dir(name)}
	f := p.file(raw)
	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return f, nil
}

// decode runs the YAML decoder in strict mode (unknown fields are errors). goccy/go-yaml can
// panic on some malformed documents (see schemas/pricefile); a rules file is operator input,
// so a panic is reported as an error.
func decode(data []byte) (raw rawFile, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML (decoder panicked: %v)", r)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, &raw, yaml.Strict()); err != nil {
		return rawFile{}, errors.New(yaml.FormatError(err, false, false))
	}
	return raw, nil
}

type parser struct {
	name  string
	dir   string // relative secret files are read from here
	where string
	errs  []error
}

func (p *parser) errorf(format string, args ...any) {
	prefix := p.name + ": "
	if p.where != "" {
		prefix += p.where + ": "
	}
	p.errs = append(p.errs, fmt.Errorf(prefix+format, args...))
}

func (p *parser) duration(field, s string, def, minimum, maximum time.Duration) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errorf("%s: %q is not a duration (e.g. 90s, 15m, 1h)", field, s)
		return def
	}
	if d < minimum || d > maximum {
		p.errorf("%s: %s is outside [%s, %s]", field, d, minimum, maximum)
	}
	return d
}

func (p *parser) decimal(field, s string, scale int, def int64) int64 {
	if s == "" {
		return def
	}
	v, err := parseDecimal(s, scale)
	if err != nil {
		p.errorf("%s: %v", field, err)
		return def
	}
	return v
}

// amount parses a value in the measure's unit: USD with up to 12 decimals for money, a
// whole number otherwise.
func (p *parser) amount(field, s string, m Measure) int64 {
	if m.Money() {
		return p.decimal(field, s, 12, 0)
	}
	return p.decimal(field, s, 0, 0)
}

func (p *parser) file(raw rawFile) *File {
	f := &File{LinkURL: raw.LinkURL}
	if raw.LinkURL != "" {
		p.url("link_url", raw.LinkURL)
	}
	for k := range raw.Builtins {
		if !slices.Contains([]string{BuiltinUnpricedModel, BuiltinUntaggedShare, BuiltinTeamSpike, BuiltinTierFallback, BuiltinBillingDrift}, k) {
			p.errorf("builtins: %q is not a built-in rule (want %s, %s, %s, %s or %s)", k, BuiltinUnpricedModel, BuiltinUntaggedShare, BuiltinTeamSpike, BuiltinTierFallback, BuiltinBillingDrift)
		}
	}
	if on, set := raw.Builtins[BuiltinBillingDrift]; !set || on {
		p.where = "billing_drift"
		d := BillingDrift{
			AboveMilli: p.decimal("above_percent", raw.Drift.AbovePercent, 3, DefaultDriftAboveMilli),
			MinPico:    p.decimal("min_usd", raw.Drift.MinUSD, 12, DefaultDriftMinPico),
			Days:       raw.Drift.Days, Severity: raw.Drift.Severity,
		}
		if d.Days == 0 {
			d.Days = DefaultDriftDays
		}
		if d.Days < 1 || d.Days > 90 {
			p.errorf("days: %d is outside [1, 90]", d.Days)
		}
		if d.AboveMilli <= 0 || d.AboveMilli > 100_000 {
			p.errorf("above_percent: %s is outside (0, 100]", raw.Drift.AbovePercent)
		}
		if d.Severity == "" {
			d.Severity = "warning"
		}
		f.BillingDrift = &d
		p.where = ""
	} else if raw.Drift != (rawBillingDrift{}) {
		p.errorf("billing_drift: set, but builtins turns billing_drift off")
	}
	if len(raw.Rules) > maxRules {
		p.errorf("rules: %d rules, more than %d", len(raw.Rules), maxRules)
		raw.Rules = raw.Rules[:maxRules]
	}
	names := map[string]bool{}
	for i, rr := range raw.Rules {
		p.where = fmt.Sprintf("rules[%d] %q", i, rr.Name)
		if Kind(rr.Kind) == RunawayKind {
			f.Runaways = append(f.Runaways, p.runaway(rr))
		} else {
			f.Rules = append(f.Rules, p.rule(rr))
		}
		p.where = ""
		if names[rr.Name] {
			p.errorf("rules[%d]: name %q is used twice", i, rr.Name)
		}
		names[rr.Name] = true
	}
	for _, b := range Builtins() {
		on, set := raw.Builtins[b.Name]
		if (set && !on) || names[b.Name] {
			continue
		}
		f.Rules = append(f.Rules, b)
	}
	budgetNames := map[string]bool{}
	for i, rb := range raw.Budgets {
		p.where = fmt.Sprintf("budgets[%d] %q", i, rb.Name)
		b := p.budget(rb)
		p.where = ""
		if budgetNames[b.Name] {
			p.errorf("budgets[%d]: name %q is used twice", i, b.Name)
		}
		budgetNames[b.Name] = true
		f.Budgets = append(f.Budgets, b)
	}
	p.where = "route"
	f.Route = Route{
		GroupBy:        raw.Route.GroupBy,
		GroupWait:      p.duration("group_wait", raw.Route.GroupWait, DefaultGroupWait, 0, time.Hour),
		GroupInterval:  p.duration("group_interval", raw.Route.GroupInterval, DefaultGroupInterval, time.Second, 24*time.Hour),
		RepeatInterval: p.duration("repeat_interval", raw.Route.RepeatInterval, DefaultRepeatInterval, time.Minute, 30*24*time.Hour),
	}
	if f.Route.GroupBy == nil {
		f.Route.GroupBy = []string{"alertname"}
	}
	for _, l := range f.Route.GroupBy {
		if !namePattern.MatchString(l) {
			p.errorf("group_by: %q is not a label name", l)
		}
	}
	receiverNames := map[string]bool{}
	for i, rr := range raw.Receivers {
		p.where = fmt.Sprintf("receivers[%d] %q", i, rr.Name)
		r := p.receiver(rr)
		if receiverNames[r.Name] {
			p.errorf("name %q is used twice", r.Name)
		}
		receiverNames[r.Name] = true
		f.Receivers = append(f.Receivers, r)
	}
	for i, rs := range raw.Silences {
		p.where = fmt.Sprintf("silences[%d]", i)
		s := Silence{Matchers: rs.Matchers, Comment: rs.Comment}
		if len(rs.Matchers) == 0 {
			p.errorf("matchers: missing (a silence must match something)")
		}
		t, err := time.Parse(time.RFC3339, rs.EndsAt)
		if err != nil {
			p.errorf("ends_at: %q is not an RFC 3339 time", rs.EndsAt)
		}
		s.EndsAt = t.UTC()
		f.Silences = append(f.Silences, s)
	}
	for i, ri := range raw.Inhibit {
		p.where = fmt.Sprintf("inhibit_rules[%d]", i)
		f.InhibitRules = append(f.InhibitRules, p.inhibitRule(ri))
	}
	p.where = ""
	return f
}

func (p *parser) url(field, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.errorf("%s: %q is not an http(s) URL", field, s)
	}
}

// secretURL checks a URL that may be a secret (a Slack webhook's path is its token): an
// error shows only its scheme and host.
func (p *parser) secretURL(field, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.errorf("%s: %q is not an http(s) URL", field, redact.URL(s))
	}
}

// maxSecretBytes bounds a secret file.
const maxSecretBytes = 64 << 10

// secret returns the value of a receiver's secret field, given at most one way: in the file
// (value), in a file (file) or in an environment variable (env). A secret read from a file
// or a variable is trimmed of surrounding white space (a trailing newline). It also returns
// the name of the field it came from, for errors. Errors name the field, the file or the
// variable, never the value.
func (p *parser) secret(field, value, file, env string, required bool) (string, string) {
	n := 0
	for _, s := range []string{value, file, env} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		p.errorf("%s, %s_file and %s_env: want one of them, got %d", field, field, field, n)
		return "", field
	case n == 0:
		if required {
			p.errorf("%s: missing (set %s, %s_file or %s_env)", field, field, field, field)
		}
		return "", field
	case file != "":
		path := file
		if !filepath.IsAbs(path) {
			path = filepath.Join(p.dir, path)
		}
		data, err := readBounded(path, maxSecretBytes)
		if err != nil {
			p.errorf("%s_file: %v", field, err)
			return "", field + "_file"
		}
		v := strings.TrimSpace(string(data))
		if v == "" {
			p.errorf("%s_file: %s is empty", field, path)
		}
		return v, field + "_file"
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			p.errorf("%s_env: $%s is not set", field, env)
			return "", field + "_env"
		}
		v = strings.TrimSpace(v)
		if v == "" {
			p.errorf("%s_env: $%s is empty", field, env)
		}
		return v, field + "_env"
	}
	return value, field
}

// readBounded reads a regular file of at most limit bytes (a FIFO or a device would block
// or never end the reload).
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", path, limit)
	}
	return data, nil
}

func (p *parser) rule(rr rawRule) Rule {
	r := Rule{
		Name: rr.Name, Kind: Kind(rr.Kind), Measure: Measure(rr.Measure), GroupBy: rr.GroupBy,
		Severity: rr.Severity, Labels: rr.Labels, Description: rr.Description,
	}
	if !namePattern.MatchString(r.Name) {
		p.errorf("name: %q must match %s", r.Name, namePattern)
	}
	if r.Measure == "" {
		r.Measure = Cost
	}
	if !slices.Contains(Measures, r.Measure) {
		p.errorf("measure: %q is not one of %s", r.Measure, joinMeasures(Measures))
	}
	seen := map[string]bool{}
	for _, d := range r.GroupBy {
		if !slices.Contains(Dimensions, d) {
			p.errorf("group_by: %q is not one of %s", d, strings.Join(Dimensions, ", "))
		}
		if seen[d] {
			p.errorf("group_by: %q is listed twice", d)
		}
		seen[d] = true
	}
	if r.Severity == "" {
		r.Severity = "warning"
	}
	for k := range r.Labels {
		if !namePattern.MatchString(k) {
			p.errorf("labels: %q is not a label name", k)
		}
		if k == "alertname" || k == "severity" || slices.Contains(r.GroupBy, k) {
			p.errorf("labels: %q is set by the alerter itself", k)
		}
	}
	r.MinValue = p.amount("min_value", rr.MinValue, r.Measure)
	r.MinShareMilli = p.decimal("min_share_percent", rr.MinSharePct, 3, 0)
	if r.MinShareMilli > 100_000 {
		p.errorf("min_share_percent: %s is above 100", rr.MinSharePct)
	}
	r.For = p.duration("for", rr.For, 0, 0, maxFor)
	r.KeepFiringFor = p.duration("keep_firing_for", rr.KeepFiringFor, 5*time.Minute, 0, maxFor)
	r.ResolvePercent = 90
	if rr.ResolvePercent != nil {
		r.ResolvePercent = *rr.ResolvePercent
		if r.ResolvePercent < 1 || r.ResolvePercent > 100 {
			p.errorf("resolve_percent: %d is outside [1, 100]", r.ResolvePercent)
		}
	}
	unused := func(kind Kind, fields map[string]bool) {
		for f, set := range fields {
			if set {
				p.errorf("%s: not a field of a %s rule", f, kind)
			}
		}
	}
	unused(r.Kind, map[string]bool{"min_usd": rr.MinUSD != "", "min_workflows": rr.MinWorkflows != 0, "cap": rr.Cap})
	switch r.Kind {
	case Threshold:
		unused(Threshold, map[string]bool{"period": rr.Period != "", "periods": rr.Periods != 0, "min_periods": rr.MinPeriods != 0,
			"factor": rr.Factor != "", "score": rr.Score != "", "days": rr.Days != 0, "min_history": rr.MinHistory != 0, "growth_percent": rr.GrowthPercent != ""})
		p.window(&r, rr.Window, time.Hour, true)
		switch {
		case rr.ShareOf != "" || rr.AbovePercent != "":
			if rr.Above != "" {
				p.errorf("above: set either above or share_of with above_percent, not both")
			}
			r.ShareOf = Measure(rr.ShareOf)
			if !slices.Contains(Measures, r.ShareOf) {
				p.errorf("share_of: %q is not one of %s", rr.ShareOf, joinMeasures(Measures))
			} else if r.ShareOf.Money() != r.Measure.Money() {
				p.errorf("share_of: %s and measure %s are not in the same unit", r.ShareOf, r.Measure)
			}
			if rr.AbovePercent == "" {
				p.errorf("above_percent: missing (share_of needs it)")
			}
			r.AboveShareMilli = p.decimal("above_percent", rr.AbovePercent, 3, 0)
			if r.AboveShareMilli > 100_000 {
				p.errorf("above_percent: %s is above 100", rr.AbovePercent)
			}
		case rr.Above == "":
			p.errorf("above: missing (or share_of with above_percent)")
		default:
			r.Above = p.amount("above", rr.Above, r.Measure)
		}
	case Change:
		unused(Change, map[string]bool{"above": rr.Above != "", "share_of": rr.ShareOf != "", "above_percent": rr.AbovePercent != "",
			"days": rr.Days != 0, "min_history": rr.MinHistory != 0, "growth_percent": rr.GrowthPercent != ""})
		p.window(&r, rr.Window, 15*time.Minute, false)
		r.Period = p.duration("period", rr.Period, 7*24*time.Hour, time.Hour, 7*24*time.Hour)
		if r.Period%time.Hour != 0 {
			p.errorf("period: %s is not a whole number of hours", r.Period)
		}
		if r.Window > r.Period {
			p.errorf("window: %s is longer than the period %s", r.Window, r.Period)
		}
		r.Periods, r.MinPeriods = orInt(rr.Periods, 4), orInt(rr.MinPeriods, 2)
		if r.Periods < 1 || r.Periods > maxPeriods {
			p.errorf("periods: %d is outside [1, %d]", r.Periods, maxPeriods)
		}
		if r.MinPeriods < 1 || r.MinPeriods > r.Periods {
			p.errorf("min_periods: %d is outside [1, periods (%d)]", r.MinPeriods, r.Periods)
		}
		r.FactorMilli = p.decimal("factor", rr.Factor, 3, 2000)
		r.ScoreMilli = p.decimal("score", rr.Score, 3, 3000)
		p.factor(&r)
	case Anomaly:
		unused(Anomaly, map[string]bool{"above": rr.Above != "", "share_of": rr.ShareOf != "", "above_percent": rr.AbovePercent != "",
			"window": rr.Window != "", "period": rr.Period != "", "periods": rr.Periods != 0, "min_periods": rr.MinPeriods != 0, "growth_percent": rr.GrowthPercent != ""})
		r.Window = time.Hour
		r.Days, r.MinHistory = orInt(rr.Days, 28), orInt(rr.MinHistory, 4)
		if r.Days < 7 || r.Days > maxDays {
			p.errorf("days: %d is outside [7, %d]", r.Days, maxDays)
		}
		if r.MinHistory < 2 || r.MinHistory > r.Days*2/7 {
			p.errorf("min_history: %d is outside [2, %d] (a weekend day occurs %d times in %d days)", r.MinHistory, r.Days*2/7, r.Days*2/7, r.Days)
		}
		r.FactorMilli = p.decimal("factor", rr.Factor, 3, 1500)
		r.ScoreMilli = p.decimal("score", rr.Score, 3, 4000)
		p.factor(&r)
	case Creep:
		unused(Creep, map[string]bool{"above": rr.Above != "", "share_of": rr.ShareOf != "", "above_percent": rr.AbovePercent != "",
			"window": rr.Window != "", "period": rr.Period != "", "periods": rr.Periods != 0, "min_periods": rr.MinPeriods != 0,
			"factor": rr.Factor != "", "score": rr.Score != "", "days": rr.Days != 0, "min_history": rr.MinHistory != 0})
		r.Window = 7 * 24 * time.Hour
		r.GrowthMilli = p.decimal("growth_percent", rr.GrowthPercent, 3, 30_000)
		if r.GrowthMilli == 0 {
			p.errorf("growth_percent: must be above 0")
		}
		if rr.For == "" {
			r.For = 3 * 24 * time.Hour
		}
		if r.For%(24*time.Hour) != 0 || r.For > maxFor {
			p.errorf("for: %s must be whole days, at most 7 (creep is judged once a day)", r.For)
		}
	case "":
		p.errorf("kind: missing (threshold, change, creep, anomaly or runaway)")
	default:
		p.errorf("kind: %q is not threshold, change, creep, anomaly or runaway", rr.Kind)
	}
	return r
}

func (p *parser) window(r *Rule, s string, def time.Duration, calendar bool) {
	if calendar && s == "calendar_day" {
		r.CalendarDay = true
		r.Window = 24 * time.Hour
		return
	}
	r.Window = p.duration("window", s, def, time.Minute, maxWindow)
	if r.Window%time.Minute != 0 {
		p.errorf("window: %s is not a whole number of minutes", r.Window)
	}
	if r.Kind == Change && r.Window > time.Hour && r.Window%time.Hour != 0 {
		p.errorf("window: %s is longer than an hour but not a whole number of hours", r.Window)
	}
}

func (p *parser) factor(r *Rule) {
	if r.FactorMilli < 1000 {
		p.errorf("factor: %s is below 1", FormatMilli(r.FactorMilli))
	}
	if r.FactorMilli > 1_000_000 {
		p.errorf("factor: %s is above 1000", FormatMilli(r.FactorMilli))
	}
	if r.ScoreMilli > 1_000_000 {
		p.errorf("score: %s is above 1000", FormatMilli(r.ScoreMilli))
	}
}

func (p *parser) budget(rb rawBudget) Budget {
	b := Budget{Name: rb.Name, Period: rb.Period, PeriodDays: rb.PeriodDays, AlertAtPercent: rb.AlertAtPercent,
		HardCapPercent: rb.HardCapPercent, Policy: rb.Policy, Severity: rb.Severity}
	if !namePattern.MatchString(b.Name) {
		p.errorf("name: %q must match %s", b.Name, namePattern)
	}
	if len(rb.Scope) != 1 {
		p.errorf("scope: want exactly one of team, feature or cost_center, e.g. {team: search}")
	}
	for k, v := range rb.Scope {
		b.ScopeKey, b.ScopeValue = k, v
		if k != "team" && k != "feature" && k != "cost_center" {
			p.errorf("scope: %q is not team, feature or cost_center", k)
		}
		if v == "" {
			p.errorf("scope: %s is empty", k)
		}
	}
	switch b.Period {
	case "", Monthly:
		b.Period = Monthly
		if rb.PeriodStart != "" || rb.PeriodDays != 0 {
			p.errorf("period_start, period_days: only for period: custom")
		}
	case Custom:
		t, err := time.Parse(time.DateOnly, rb.PeriodStart)
		if err != nil {
			p.errorf("period_start: %q is not a date (2026-01-01)", rb.PeriodStart)
		}
		b.PeriodStart = t
		if b.PeriodDays < 1 || b.PeriodDays > 366 {
			p.errorf("period_days: %d is outside [1, 366]", b.PeriodDays)
		}
	default:
		p.errorf("period: %q is not monthly or custom", rb.Period)
	}
	if rb.LimitUSD == "" {
		p.errorf("limit_usd: missing")
	}
	b.LimitPico = p.decimal("limit_usd", rb.LimitUSD, 12, 0)
	if rb.LimitUSD != "" && b.LimitPico == 0 {
		p.errorf("limit_usd: must be above 0")
	}
	if b.AlertAtPercent == nil {
		b.AlertAtPercent = []int64{80, 100}
	}
	for i, a := range b.AlertAtPercent {
		if a < 1 || a > 1000 {
			p.errorf("alert_at_percent: %d is outside [1, 1000]", a)
		}
		if i > 0 && a <= b.AlertAtPercent[i-1] {
			p.errorf("alert_at_percent: %v is not strictly increasing", b.AlertAtPercent)
			break
		}
	}
	b.ForecastAlertMilli = p.decimal("forecast_alert_percent", rb.ForecastAlertPercent, 3, DefaultForecastAlertMilli)
	if b.ForecastAlertMilli <= 0 || b.ForecastAlertMilli >= 100_000 {
		p.errorf("forecast_alert_percent: %s is outside (0, 100)", rb.ForecastAlertPercent)
	}
	if b.HardCapPercent < 0 || b.HardCapPercent > 1000 {
		p.errorf("hard_cap_percent: %d is outside [0, 1000] (0: no hard cap)", b.HardCapPercent)
	}
	switch b.Policy {
	case "":
		b.Policy = PolicyRefuse
	case PolicyRefuse, PolicyFlag:
	default:
		p.errorf("policy: %q is not refuse or flag", b.Policy)
	}
	if b.Severity == "" {
		b.Severity = "warning"
	}
	return b
}

func (p *parser) receiver(rr rawReceiver) Receiver {
	r := Receiver{Name: rr.Name, Match: rr.Match}
	if !namePattern.MatchString(r.Name) {
		p.errorf("name: %q must match %s", r.Name, namePattern)
	}
	n := 0
	if w := rr.Webhook; w != nil {
		n++
		u, from := p.secret("webhook.url", w.URL, w.URLFile, w.URLEnv, true)
		if u != "" {
			p.secretURL(from, u)
		}
		token, _ := p.secret("webhook.bearer_token", w.BearerToken, w.BearerTokenFile, w.BearerTokenEnv, false)
		r.Webhook = &Webhook{URL: u, BearerToken: token}
	}
	if s := rr.Slack; s != nil {
		n++
		u, from := p.secret("slack.url", s.URL, s.URLFile, s.URLEnv, true)
		if u != "" {
			p.secretURL(from, u)
		}
		r.Slack = &Slack{URL: u, Channel: s.Channel}
	}
	if pd := rr.PagerDuty; pd != nil {
		n++
		key, from := p.secret("pagerduty.routing_key", pd.RoutingKey, pd.RoutingKeyFile, pd.RoutingKeyEnv, true)
		r.PagerDuty = &PagerDuty{URL: pd.URL, RoutingKey: key}
		if r.PagerDuty.URL == "" {
			r.PagerDuty.URL = DefaultPagerDutyURL
		}
		p.url("pagerduty.url", r.PagerDuty.URL)
		if key != "" && len(key) != 32 {
			p.errorf("%s: want the 32-character integration key, got %d characters", from, len(key))
		}
	}
	if rr.Alertmanager != nil {
		n++
		p.url("alertmanager.url", rr.Alertmanager.URL)
		r.Alertmanager = &Alertmanager{URL: strings.TrimRight(rr.Alertmanager.URL, "/")}
	}
	if n != 1 {
		p.errorf("want exactly one of webhook, slack, pagerduty or alertmanager, got %d", n)
	}
	return r
}

// Builtins returns the rules on by default.
func Builtins() []Rule {
	return []Rule{
		{
			Name: BuiltinUnpricedModel, Kind: Threshold, Measure: UnpricedEvents, GroupBy: []string{"provider", "model"},
			Window: time.Hour, Above: 0, KeepFiringFor: 10 * time.Minute, ResolvePercent: 100, Severity: "warning",
			Description: "events of a model without a price: their cost is unknown, not zero; add the model to a pricing file",
		},
		{
			Name: BuiltinUntaggedShare, Kind: Threshold, Measure: UntaggedCost, ShareOf: Cost, AboveShareMilli: 10_000,
			Window: time.Hour, MinValue: 1 * PicoPerUSD, KeepFiringFor: 15 * time.Minute, ResolvePercent: 90, Severity: "warning",
			Description: "more than 10% of the last hour's spend is not fully attributed (team unset or unallocated, or feature, env or cost_center unset), as tag_coverage counts it",
		},
		{
			Name: BuiltinTeamSpike, Kind: Change, Measure: Cost, GroupBy: []string{"team"},
			Window: 15 * time.Minute, Period: 7 * 24 * time.Hour, Periods: 4, MinPeriods: 2, FactorMilli: 2000, ScoreMilli: 3000,
			MinValue: 1 * PicoPerUSD, KeepFiringFor: 5 * time.Minute, ResolvePercent: 90, Severity: "page",
			Description: "a team's spend over the last 15 minutes is at least twice its usual for this time of the week",
		},
		{
			Name: BuiltinTierFallback, Kind: Threshold, Measure: TierFallbackEvents, GroupBy: []string{"provider", "model"},
			Window: time.Hour, Above: 0, KeepFiringFor: 10 * time.Minute, ResolvePercent: 100, Severity: "warning",
			Description: "events of the batch, flex or priority tier priced at standard prices because the model has no price for the tier; add the tier's prices to a pricing file and re-rate (see the tier_fallbacks view)",
		},
	}
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func joinMeasures(ms []Measure) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}
