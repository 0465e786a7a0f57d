package summary

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// The queries below read db.spend_1d, whose days are the ClickHouse server's dates of the
// events' times (UTC for the local server that deploy/clickhouse/local.sh starts).

// Untagged is the key under which rows without a value for a tag are grouped.
const Untagged = "(untagged)"

// Other is the key that folds every series beyond the requested number in ByDay.
const Other = "(other)"

// Dimensions lists the names accepted by "by" and by Filter, in display order.
func Dimensions() []string {
	return []string{"team", "feature", "env", "cost_center", "traffic", "provider", "model"}
}

// dimension returns the SQL expression that groups rows of spend_1d by name. An empty tag
// becomes Untagged, and a model is named provider/model as it was priced (as reported when it
// was not), so that dated snapshots sum under their catalogue model.
func dimension(name string) (string, error) {
	switch name {
	case "team", "feature", "env", "cost_center", "traffic":
		return fmt.Sprintf("if(%[1]s = '', '%[2]s', %[1]s)", name, Untagged), nil
	case "provider":
		return "provider", nil
	case "model":
		return "concat(provider, '/', if(model_priced = '', model, model_priced))", nil
	case "total":
		return "'total'", nil
	}
	return "", fmt.Errorf("unknown dimension %q: want one of %s", name, strings.Join(Dimensions(), ", "))
}

// TagPrefix names, in Breakdown's by, a tag beyond the well-known dimensions: "tag.region"
// groups by the tag region. Such tags live only in usage_events, so these breakdowns scan the
// events of the range instead of a roll-up.
const TagPrefix = "tag."

// ValidTag reports a tag key that events cannot carry (the event's tag-key rules).
func ValidTag(key string) error {
	if len(key) == 0 || len(key) > 64 || strings.Trim(key, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != "" {
		return fmt.Errorf("tag %q: want 1 to 64 of a-z, 0-9, '_', '.', '-'", key)
	}
	return nil
}

// extraTag returns the SQL expression of an event's value of tag key (Untagged when absent).
// A valid key is also safe to quote.
func extraTag(key string) (string, error) {
	if err := ValidTag(key); err != nil {
		return "", err
	}
	return fmt.Sprintf("if(has(tag_keys, '%[1]s'), tag_values[indexOf(tag_keys, '%[1]s')], '%[2]s')", key, Untagged), nil
}

// Filter keeps the rows whose dimension (a name of Dimensions) has the given value, with the
// same spelling the breakdowns show ("(untagged)", "openai/gpt-4o"). Conditions are joined by AND.
type Filter map[string]string

// where renders the filter as SQL conditions with positional arguments, in a stable order.
func (f Filter) where() (string, []any, error) {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conds []string
	var args []any
	var errs []error
	for _, k := range keys {
		expr, err := dimension(k)
		if err != nil || k == "total" {
			errs = append(errs, fmt.Errorf("filter: unknown dimension %q", k))
			continue
		}
		conds = append(conds, expr+" = ?")
		args = append(args, f[k])
	}
	if err := errors.Join(errs...); err != nil {
		return "", nil, err
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " AND " + strings.Join(conds, " AND "), args, nil
}

// Range is an inclusive range of days.
type Range struct {
	From, To time.Time
}

// Days returns the range of n days ending with the day of t.
func Days(t time.Time, n int) Range {
	to := Day(t)
	return Range{From: to.AddDate(0, 0, -(n - 1)), To: to}
}

// Day truncates t to its UTC date.
func Day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// Validate reports a range that ends before it starts or spans more than 3 years.
func (r Range) Validate() error {
	if r.To.Before(r.From) {
		return fmt.Errorf("range %s..%s ends before it starts", r.From.Format(time.DateOnly), r.To.Format(time.DateOnly))
	}
	if r.To.Sub(r.From) > 3*366*24*time.Hour {
		return fmt.Errorf("range %s..%s spans more than 3 years", r.From.Format(time.DateOnly), r.To.Format(time.DateOnly))
	}
	return nil
}

func (r Range) args() []any {
	return []any{r.From.Format(time.DateOnly), r.To.Format(time.DateOnly)}
}

// Breakdown sums the spend of a range by a dimension (or TagPrefix and a tag key), most
// expensive first, at most limit lines.
func Breakdown(ctx context.Context, conn driver.Conn, db, by string, r Range, f Filter, limit int) ([]Line, error) {
	table, day, events, unpriced := "spend_1d", "day", "sum(events)", "sum(unpriced_events)"
	var key string
	var err error
	if tag, ok := strings.CutPrefix(by, TagPrefix); ok {
		key, err = extraTag(tag)
		table, day, events, unpriced = "usage_events", "toDate(time)", "count()", "sum(toUInt64(priced = 0))"
	} else {
		key, err = dimension(by)
	}
	if err != nil {
		return nil, err
	}
	cond, fargs, err := f.where()
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf(`SELECT %s AS k, %s AS e, toString(sum(cost_usd)) AS c, %s AS u
		FROM %s.%s WHERE %[6]s >= toDate(?) AND %[6]s <= toDate(?)%s
		GROUP BY k ORDER BY sum(cost_usd) DESC, k LIMIT %d`, key, events, unpriced, db, table, day, cond, max(limit, 1))
	rows, err := conn.Query(ctx, q, append(r.args(), fargs...)...)
	if err != nil {
		return nil, fmt.Errorf("query spend by %s: %w", by, err)
	}
	defer rows.Close()
	out := []Line{}
	for rows.Next() {
		var l Line
		var cost string
		if err := rows.Scan(&l.Key, &l.Events, &cost, &l.Unpriced); err != nil {
			return nil, fmt.Errorf("read spend by %s: %w", by, err)
		}
		if l.Cost, err = decimal.NewFromString(cost); err != nil {
			return nil, fmt.Errorf("read spend by %s: cost %q: %w", by, cost, err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read spend by %s: %w", by, err)
	}
	return out, nil
}

// Series is the daily spend of one key over a range, one value per day of the range.
type Series struct {
	Key  string            `json:"key"`
	Cost []decimal.Decimal `json:"cost_usd"`
	// Total is the sum of Cost.
	Total decimal.Decimal `json:"total_usd"`
}

// Daily is spend per day and key over a range.
type Daily struct {
	Days   []string `json:"days"`
	Series []Series `json:"series"`
}

// ByDay returns the spend per day of the range by a dimension ("total" gives one series). The
// limit most expensive keys over the range get a series each; the rest are folded into Other.
// Every day of the range has a value, zero when nothing was spent.
func ByDay(ctx context.Context, conn driver.Conn, db, by string, r Range, f Filter, limit int) (Daily, error) {
	key, err := dimension(by)
	if err != nil {
		return Daily{}, err
	}
	cond, fargs, err := f.where()
	if err != nil {
		return Daily{}, err
	}
	var d Daily
	index := map[string]int{}
	for day := r.From; !day.After(r.To); day = day.AddDate(0, 0, 1) {
		index[day.Format(time.DateOnly)] = len(d.Days)
		d.Days = append(d.Days, day.Format(time.DateOnly))
	}
	q := fmt.Sprintf(`SELECT toString(day) AS d, %s AS k, toString(sum(cost_usd)) AS c
		FROM %s.spend_1d WHERE day >= toDate(?) AND day <= toDate(?)%s
		GROUP BY d, k ORDER BY d, k`, key, db, cond)
	rows, err := conn.Query(ctx, q, append(r.args(), fargs...)...)
	if err != nil {
		return Daily{}, fmt.Errorf("query daily spend by %s: %w", by, err)
	}
	defer rows.Close()
	series := map[string]*Series{}
	for rows.Next() {
		var day, k, cost string
		if err := rows.Scan(&day, &k, &cost); err != nil {
			return Daily{}, fmt.Errorf("read daily spend by %s: %w", by, err)
		}
		c, err := decimal.NewFromString(cost)
		if err != nil {
			return Daily{}, fmt.Errorf("read daily spend by %s: cost %q: %w", by, cost, err)
		}
		i, ok := index[day]
		if !ok {
			return Daily{}, fmt.Errorf("read daily spend by %s: day %s is outside the range", by, day)
		}
		s := series[k]
		if s == nil {
			s = &Series{Key: k, Cost: zeros(len(d.Days))}
			series[k] = s
		}
		s.Cost[i] = s.Cost[i].Add(c)
		s.Total = s.Total.Add(c)
	}
	if err := rows.Err(); err != nil {
		return Daily{}, fmt.Errorf("read daily spend by %s: %w", by, err)
	}
	all := make([]Series, 0, len(series))
	for _, s := range series {
		all = append(all, *s)
	}
	sort.Slice(all, func(i, j int) bool {
		if c := all[i].Total.Cmp(all[j].Total); c != 0 {
			return c > 0
		}
		return all[i].Key < all[j].Key
	})
	limit = max(limit, 1)
	if len(all) > limit {
		other := Series{Key: Other, Cost: zeros(len(d.Days))}
		for _, s := range all[limit:] {
			for i, c := range s.Cost {
				other.Cost[i] = other.Cost[i].Add(c)
			}
			other.Total = other.Total.Add(s.Total)
		}
		all = append(all[:limit], other)
	}
	d.Series = all
	return d, nil
}

func zeros(n int) []decimal.Decimal {
	z := make([]decimal.Decimal, n)
	for i := range z {
		z[i] = decimal.Zero
	}
	return z
}

// Mover is a key whose spend changed between two periods.
type Mover struct {
	Key      string          `json:"key"`
	Current  decimal.Decimal `json:"current_usd"`
	Previous decimal.Decimal `json:"previous_usd"`
	Delta    decimal.Decimal `json:"delta_usd"`
	// ChangePct is Delta in percent of Previous, rounded to one decimal; "" when Previous is
	// zero (a new key).
	ChangePct string `json:"change_pct"`
}

// Movers compares the spend by a dimension of the n days ending with the day of now with the
// n days before them, and returns the limit keys whose spend changed most (in dollars, up or
// down). Keys whose spend did not change are left out.
func Movers(ctx context.Context, conn driver.Conn, db, by string, now time.Time, n int, f Filter, limit int) ([]Mover, error) {
	key, err := dimension(by)
	if err != nil {
		return nil, err
	}
	cond, fargs, err := f.where()
	if err != nil {
		return nil, err
	}
	cur := Days(now, n)
	prev := Range{From: cur.From.AddDate(0, 0, -n), To: cur.From.AddDate(0, 0, -1)}
	q := fmt.Sprintf(`SELECT %s AS k,
			toString(sumIf(cost_usd, day >= toDate(?))) AS cur,
			toString(sumIf(cost_usd, day < toDate(?))) AS prev
		FROM %s.spend_1d WHERE day >= toDate(?) AND day <= toDate(?)%s
		GROUP BY k`, key, db, cond)
	args := append([]any{cur.From.Format(time.DateOnly), cur.From.Format(time.DateOnly)},
		append(Range{From: prev.From, To: cur.To}.args(), fargs...)...)
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query movers by %s: %w", by, err)
	}
	defer rows.Close()
	out := []Mover{}
	for rows.Next() {
		var m Mover
		var c, p string
		if err := rows.Scan(&m.Key, &c, &p); err != nil {
			return nil, fmt.Errorf("read movers by %s: %w", by, err)
		}
		if m.Current, err = decimal.NewFromString(c); err != nil {
			return nil, fmt.Errorf("read movers by %s: cost %q: %w", by, c, err)
		}
		if m.Previous, err = decimal.NewFromString(p); err != nil {
			return nil, fmt.Errorf("read movers by %s: cost %q: %w", by, p, err)
		}
		m.Delta = m.Current.Sub(m.Previous)
		if m.Delta.IsZero() {
			continue
		}
		m.ChangePct = Percent(m.Delta, m.Previous)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read movers by %s: %w", by, err)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Delta.Abs().Cmp(out[j].Delta.Abs()); c != 0 {
			return c > 0
		}
		return out[i].Key < out[j].Key
	})
	if len(out) > limit {
		out = out[:max(limit, 0)]
	}
	return out, nil
}

// Percent returns part in percent of whole with one decimal ("" when whole is zero).
func Percent(part, whole decimal.Decimal) string {
	if whole.IsZero() {
		return ""
	}
	return part.Mul(decimal.NewFromInt(100)).DivRound(whole, 1).StringFixed(1)
}

// UnpricedModel is a model whose events could not be priced.
type UnpricedModel struct {
	Provider  string `json:"provider"`
	Model     string `json:"model"`
	Events    uint64 `json:"events"`
	FirstSeen string `json:"first_day"`
	LastSeen  string `json:"last_day"`
}

// Unpriced lists the models with unpriced events in a range, most events first.
func Unpriced(ctx context.Context, conn driver.Conn, db string, r Range, f Filter) ([]UnpricedModel, error) {
	cond, fargs, err := f.where()
	if err != nil {
		return nil, err
	}
	q := fmt.Sprintf(`SELECT provider, model, sum(unpriced_events) AS u, toString(min(day)), toString(max(day))
		FROM %s.spend_1d WHERE day >= toDate(?) AND day <= toDate(?) AND unpriced_events > 0%s
		GROUP BY provider, model ORDER BY u DESC, provider, model`, db, cond)
	rows, err := conn.Query(ctx, q, append(r.args(), fargs...)...)
	if err != nil {
		return nil, fmt.Errorf("query unpriced models: %w", err)
	}
	defer rows.Close()
	out := []UnpricedModel{}
	for rows.Next() {
		var m UnpricedModel
		if err := rows.Scan(&m.Provider, &m.Model, &m.Events, &m.FirstSeen, &m.LastSeen); err != nil {
			return nil, fmt.Errorf("read unpriced models: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read unpriced models: %w", err)
	}
	return out, nil
}

// TagCoverage is how much of the spend carries a value for one tag.
type TagCoverage struct {
	Tag          string          `json:"tag"`
	TaggedEvents uint64          `json:"tagged_events"`
	TaggedCost   decimal.Decimal `json:"tagged_usd"`
	// SharePct is TaggedCost in percent of the total cost, one decimal ("" when nothing was spent).
	SharePct string `json:"share_pct"`
}

// TeamCoverage is how much of a team's spend is fully attributed.
type TeamCoverage struct {
	Team           string          `json:"team"`
	Cost           decimal.Decimal `json:"cost_usd"`
	AttributedCost decimal.Decimal `json:"attributed_usd"`
	SharePct       string          `json:"share_pct"`
}

// Coverage tells how well spend is attributed. A row is fully attributed when it has a team,
// a feature and an env.
type Coverage struct {
	Events         uint64          `json:"events"`
	Cost           decimal.Decimal `json:"cost_usd"`
	AttributedCost decimal.Decimal `json:"attributed_usd"`
	SharePct       string          `json:"share_pct"`
	Tags           []TagCoverage   `json:"tags"`
	ByTeam         []TeamCoverage  `json:"by_team"`
}

// coverageTags are the tags whose coverage is measured, in order.
func coverageTags() []string { return []string{"team", "feature", "env", "cost_center"} }

// CoverageOf measures, over a range, the share of spend carrying each tag, the share fully
// attributed, and the latter per team (most expensive team first).
func CoverageOf(ctx context.Context, conn driver.Conn, db string, r Range, f Filter) (Coverage, error) {
	cond, fargs, err := f.where()
	if err != nil {
		return Coverage{}, err
	}
	var cols []string
	for _, t := range coverageTags() {
		cols = append(cols, fmt.Sprintf("sumIf(events, %[1]s != '') AS e_%[1]s, toString(sumIf(cost_usd, %[1]s != '')) AS c_%[1]s", t))
	}
	q := fmt.Sprintf(`SELECT if(team = '', '%s', team) AS k, sum(events), toString(sum(cost_usd)),
			toString(sumIf(cost_usd, team != '' AND feature != '' AND env != '')), %s
		FROM %s.spend_1d WHERE day >= toDate(?) AND day <= toDate(?)%s
		GROUP BY k ORDER BY sum(cost_usd) DESC, k`, Untagged, strings.Join(cols, ", "), db, cond)
	rows, err := conn.Query(ctx, q, append(r.args(), fargs...)...)
	if err != nil {
		return Coverage{}, fmt.Errorf("query tag coverage: %w", err)
	}
	defer rows.Close()
	cov := Coverage{ByTeam: []TeamCoverage{}}
	for _, t := range coverageTags() {
		cov.Tags = append(cov.Tags, TagCoverage{Tag: t})
	}
	for rows.Next() {
		var tc TeamCoverage
		var events uint64
		var cost, attributed string
		tagEvents := make([]uint64, len(cov.Tags))
		tagCosts := make([]string, len(cov.Tags))
		dest := []any{&tc.Team, &events, &cost, &attributed}
		for i := range cov.Tags {
			dest = append(dest, &tagEvents[i], &tagCosts[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return Coverage{}, fmt.Errorf("read tag coverage: %w", err)
		}
		if tc.Cost, err = decimal.NewFromString(cost); err != nil {
			return Coverage{}, fmt.Errorf("read tag coverage: cost %q: %w", cost, err)
		}
		if tc.AttributedCost, err = decimal.NewFromString(attributed); err != nil {
			return Coverage{}, fmt.Errorf("read tag coverage: cost %q: %w", attributed, err)
		}
		tc.SharePct = Percent(tc.AttributedCost, tc.Cost)
		cov.ByTeam = append(cov.ByTeam, tc)
		cov.Events += events
		cov.Cost = cov.Cost.Add(tc.Cost)
		cov.AttributedCost = cov.AttributedCost.Add(tc.AttributedCost)
		for i := range cov.Tags {
			c, err := decimal.NewFromString(tagCosts[i])
			if err != nil {
				return Coverage{}, fmt.Errorf("read tag coverage: cost %q: %w", tagCosts[i], err)
			}
			cov.Tags[i].TaggedEvents += tagEvents[i]
			cov.Tags[i].TaggedCost = cov.Tags[i].TaggedCost.Add(c)
		}
	}
	if err := rows.Err(); err != nil {
		return Coverage{}, fmt.Errorf("read tag coverage: %w", err)
	}
	cov.SharePct = Percent(cov.AttributedCost, cov.Cost)
	for i := range cov.Tags {
		cov.Tags[i].SharePct = Percent(cov.Tags[i].TaggedCost, cov.Cost)
	}
	return cov, nil
}

// Spend is what "tokenmeter spend" shows.
type Spend struct {
	Today, MonthToDate Range
	// TodayTotal and MonthTotal are the totals of their ranges.
	TodayTotal, MonthTotal Line
	TodayByTeam            []Line
	TodayByModel           []Line
	MonthByTeam            []Line
	MonthByModel           []Line
	// MoverDays is the length of the two periods Movers compares.
	MoverDays     int
	TeamMovers    []Mover
	ModelMovers   []Mover
	UnpricedMonth []UnpricedModel
}

// QuerySpend reads today's and the month's spend (up to now's day) by team and by model, the
// top movers by team and by model over the last 7 days and the month's unpriced models, limit
// lines per list.
func QuerySpend(ctx context.Context, conn driver.Conn, db string, now time.Time, limit int) (Spend, error) {
	today := Days(now, 1)
	s := Spend{Today: today, MonthToDate: Range{From: today.From.AddDate(0, 0, 1-today.From.Day()), To: today.To}, MoverDays: 7}
	total := func(r Range) (Line, error) {
		l, err := Breakdown(ctx, conn, db, "total", r, nil, 1)
		if err != nil || len(l) == 0 {
			return Line{Key: "total"}, err
		}
		return l[0], nil
	}
	var errs [9]error
	s.TodayTotal, errs[0] = total(s.Today)
	s.MonthTotal, errs[1] = total(s.MonthToDate)
	s.TodayByTeam, errs[2] = Breakdown(ctx, conn, db, "team", s.Today, nil, limit)
	s.TodayByModel, errs[3] = Breakdown(ctx, conn, db, "model", s.Today, nil, limit)
	s.MonthByTeam, errs[4] = Breakdown(ctx, conn, db, "team", s.MonthToDate, nil, limit)
	s.MonthByModel, errs[5] = Breakdown(ctx, conn, db, "model", s.MonthToDate, nil, limit)
	s.TeamMovers, errs[6] = Movers(ctx, conn, db, "team", now, s.MoverDays, nil, limit)
	s.ModelMovers, errs[7] = Movers(ctx, conn, db, "model", now, s.MoverDays, nil, limit)
	s.UnpricedMonth, errs[8] = Unpriced(ctx, conn, db, s.MonthToDate, nil)
	return s, errors.Join(errs[:]...)
}
