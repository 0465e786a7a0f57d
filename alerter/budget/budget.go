// Package budget tracks spend against budgets (monthly or custom periods, per team, feature
// or cost centre): spend so far in the period, a forecast for the period's end, the soft caps
// crossed and whether the hard cap is reached. The alerter publishes each budget's state to
// the JetStream KV bucket tokenmeter_budgets, which the collector watches to refuse or flag
// the requests of a scope over its hard cap.
//
// Forecast, seasonal: once the scope's spend is known for at least 14 complete days, the
// forecast is the spend so far plus, for every day left in the period (today in proportion to
// the time left of it), the mean spend of that weekday over the last 4 weeks known — weekdays
// and weekends spend differently. Its spread comes from how far the known days fell from
// their weekday's mean: σ² = Σ residual² / (n − 7) per day, so the sum over the k days left
// has variance k·σ²; the forecast carries a 90 % interval (± 1.645 σ√k, never below the spend
// so far) and the probability of ending over the limit, 1 − Φ((limit − forecast) / σ√k).
// These are statistics, computed in floating point; the spend itself stays exact.
//
// Forecast, run-rate (less history): spent so far plus the recent daily run-rate times the
// time left. The run-rate is the spend of the last 7 complete days divided by 7 days once the
// period is at least 7 days old; before that it is the spend so far divided by the time
// elapsed since the period began (so a budget created on the 2nd extrapolates from one day).
// Every amount is an integer number of picodollars; the division rounds down.
package budget

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/window"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Status is a budget's position at one moment.
type Status struct {
	Budget                 *rules.Budget
	PeriodStart, PeriodEnd time.Time
	Spent, Forecast        int64
	// Seasonal is set when the forecast is the seasonal one: then ForecastLow and
	// ForecastHigh bound its 90 % interval and ExceedMilli is the probability, in thousandths
	// of a percent, of ending over the limit.
	Seasonal                  bool
	ForecastLow, ForecastHigh int64
	ExceedMilli               int64
	// Reached lists the soft caps (percent) reached; HardCapped whether the hard cap is.
	Reached    []int64
	HardCapped bool
}

// State is the state written to the bucket.
func (s Status) State() string {
	switch {
	case s.HardCapped:
		return kv.StateHardCapped
	case len(s.Reached) > 0:
		return kv.StateSoft
	}
	return kv.StateOK
}

// Record is the bucket value of s.
func (s Status) Record() kv.Budget {
	r := kv.Budget{Name: s.Budget.Name, Scope: s.Budget.Scope(), PeriodStart: s.PeriodStart, PeriodEnd: s.PeriodEnd,
		LimitUSD: pico(s.Budget.LimitPico), SpentUSD: pico(s.Spent), ForecastUSD: pico(s.Forecast),
		ForecastMethod: "run_rate", State: s.State(), Policy: s.Budget.Policy}
	if s.Seasonal {
		r.ForecastMethod, r.ForecastLowUSD, r.ForecastHighUSD = "seasonal", pico(s.ForecastLow), pico(s.ForecastHigh)
		r.ExceedProbability = fmt.Sprintf("%d.%03d", s.ExceedMilli/100_000, s.ExceedMilli%100_000/100)
	}
	return r
}

func pico(v int64) string { return fmt.Sprintf("%d.%012d", v/rules.PicoPerUSD, v%rules.PicoPerUSD) }

// Tracker holds each budget's daily spend. It is not safe for concurrent use.
type Tracker struct {
	budgets []*tracked
}

type tracked struct {
	kept bool
	b    *rules.Budget
	days *window.Ring // spend per UTC day index
	// first is the first day with spend known (math.MaxInt64: none): the seasonal forecast
	// counts only days from it on, not the empty days before the scope existed.
	first int64
}

// Seasonal forecast parameters.
const (
	seasonalWeeks   = 4  // weeks of history a weekday's mean averages
	minSeasonalDays = 14 // complete days known before the seasonal forecast is used
	z90             = 1.6448536269514722
)

// NewTracker tracks bs; budgets of prev with the same name and scope keep their days.
func NewTracker(bs []rules.Budget, prev *Tracker) *Tracker {
	t := &Tracker{}
	for i := range bs {
		b := &bs[i]
		tr := &tracked{b: b, days: window.NewRing(max(b.PeriodDays, 31) + 7*seasonalWeeks + 1), first: math.MaxInt64}
		if prev != nil {
			for _, o := range prev.budgets {
				if o.b.Name == b.Name && o.b.Scope() == b.Scope() && o.days.Len() == tr.days.Len() {
					tr.days, tr.first, tr.kept = o.days, o.first, true
				}
			}
		}
		t.budgets = append(t.budgets, tr)
	}
	return t
}

// Kept reports whether the named budget kept the days of the previous tracker.
func (t *Tracker) Kept(name string) bool {
	for _, tr := range t.budgets {
		if tr.b.Name == name {
			return tr.kept
		}
	}
	return false
}

// Budgets returns the budgets tracked.
func (t *Tracker) Budgets() []*rules.Budget {
	out := make([]*rules.Budget, len(t.budgets))
	for i, tr := range t.budgets {
		out[i] = tr.b
	}
	return out
}

// HistorySpan is how far back history must be loaded: the longest period plus a week.
func (t *Tracker) HistorySpan() time.Duration {
	d := 0
	for _, tr := range t.budgets {
		d = max(d, tr.days.Len())
	}
	return time.Duration(d) * 24 * time.Hour
}

// Add counts a row's cost in every budget whose scope it belongs to.
func (t *Tracker) Add(r *batch.Row) {
	if r.CostPico == 0 {
		return
	}
	for _, tr := range t.budgets {
		if window.Dimension(r, tr.b.ScopeKey) == tr.b.ScopeValue {
			tr.add(dayOf(r.Time), r.CostPico)
		}
	}
}

// AddHistory adds past spend of the named budget's scope on the day of at.
func (t *Tracker) AddHistory(name string, at time.Time, v int64) {
	for _, tr := range t.budgets {
		if tr.b.Name == name {
			tr.add(dayOf(at), v)
		}
	}
}

func (tr *tracked) add(day, v int64) {
	if tr.days.Add(day, v) {
		tr.first = min(tr.first, day)
	}
}

func dayOf(t time.Time) int64 { return window.MinuteOf(t.Unix()) / 1440 }

// Period returns the period of b that contains now.
func Period(b *rules.Budget, now time.Time) (start, end time.Time) {
	now = now.UTC()
	if b.Period == rules.Monthly {
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	length := time.Duration(b.PeriodDays) * 24 * time.Hour
	n := now.Sub(b.PeriodStart) / length
	if now.Before(b.PeriodStart) {
		n--
	}
	start = b.PeriodStart.Add(n * length)
	return start, start.Add(length)
}

// Evaluate returns every budget's status at now.
func (t *Tracker) Evaluate(now time.Time) []Status {
	out := make([]Status, 0, len(t.budgets))
	for _, tr := range t.budgets {
		b := tr.b
		start, end := Period(b, now)
		today := dayOf(now)
		s := Status{Budget: b, PeriodStart: start, PeriodEnd: end}
		s.Spent = tr.days.Sum(dayOf(start), today)
		elapsed := now.Sub(start)
		left := end.Sub(now)
		if tr.seasonal(&s, now, today) {
			// s holds the seasonal forecast
		} else if elapsed >= 7*24*time.Hour {
			last7 := tr.days.Sum(today-7, today-1)
			add, _ := rules.MulDiv(last7, int64(left/time.Second), 7*24*3600)
			s.Forecast = s.Spent + add
		} else if elapsed > 0 {
			s.Forecast, _ = rules.MulDiv(s.Spent, int64(end.Sub(start)/time.Second), max(int64(elapsed/time.Second), 1))
		}
		for _, p := range b.AlertAtPercent {
			if reached(s.Spent, b.LimitPico, p) {
				s.Reached = append(s.Reached, p)
			}
		}
		s.HardCapped = b.HardCapPercent > 0 && reached(s.Spent, b.LimitPico, b.HardCapPercent)
		out = append(out, s)
	}
	return out
}

// seasonal fills s with the seasonal forecast and reports true, when at least minSeasonalDays
// complete days of the scope's spend are known (the package comment says how).
func (tr *tracked) seasonal(s *Status, now time.Time, today int64) bool {
	from := max(tr.first, today-7*seasonalWeeks)
	n := today - from
	if tr.first == math.MaxInt64 || n < minSeasonalDays {
		return false
	}
	var sum [7]float64
	var count [7]float64
	for d := from; d < today; d++ {
		sum[weekday(d)] += float64(tr.days.Get(d))
		count[weekday(d)]++
	}
	var mean [7]float64
	for i := range mean {
		if count[i] > 0 {
			mean[i] = sum[i] / count[i]
		}
	}
	var squares float64
	for d := from; d < today; d++ {
		r := float64(tr.days.Get(d)) - mean[weekday(d)]
		squares += r * r
	}
	variance := squares / float64(n-7)
	// The days left: today in proportion to what is left of it, then every whole day.
	endDay := dayOf(s.PeriodEnd.Add(-time.Nanosecond))
	todayLeft := float64(24*time.Hour-now.Sub(now.Truncate(24*time.Hour))) / float64(24*time.Hour)
	var expected, k float64
	for d := today; d <= endDay; d++ {
		f := 1.0
		if d == today {
			f = todayLeft
		}
		expected += f * mean[weekday(d)]
		k += f
	}
	s.Seasonal = true
	s.Forecast = s.Spent + int64(math.Round(expected))
	sd := math.Sqrt(variance * k)
	s.ForecastLow = max(s.Spent, s.Forecast-int64(math.Round(z90*sd)))
	s.ForecastHigh = s.Forecast + int64(math.Round(z90*sd))
	limit := s.Budget.LimitPico
	switch {
	case sd == 0 && s.Forecast > limit:
		s.ExceedMilli = 100_000
	case sd == 0:
		s.ExceedMilli = 0
	default:
		// P(total > limit) = 1 − Φ((limit − forecast) / sd) = erfc(z/√2)/2.
		z := (float64(limit) - float64(s.Forecast)) / sd
		s.ExceedMilli = int64(math.Round(50_000 * math.Erfc(z/math.Sqrt2)))
	}
	return true
}

// weekday is the day of the week of a UTC day index, 0 for Sunday: day 0, 1970-01-01, was a
// Thursday.
func weekday(day int64) int { return int(((day+4)%7 + 7) % 7) }

// reached reports spent ≥ limit × percent / 100, exactly.
func reached(spent, limit, percent int64) bool {
	need, err := rules.MulDiv(limit, percent, 100)
	if err != nil {
		return false
	}
	return spent >= need
}

// Publisher writes budget records to the KV bucket.
type Publisher struct {
	kv   jetstream.KeyValue
	last map[string]string
	// caps are the workflow caps in the bucket by key (their JSON); capsKnown once the
	// bucket's own were listed.
	caps      map[string]string
	capsKnown bool
}

// OpenPublisher creates the bucket when missing, with as many replicas as the streams.
func OpenPublisher(ctx context.Context, js jetstream.JetStream, storage jetstream.StorageType) (*Publisher, error) {
	replicas, err := stream.BucketReplicas(ctx, js, kv.Budgets)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", kv.Budgets, err)
	}
	bucket, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: kv.Budgets, Description: "tokenmeter budget states by budget name; the collector enforces hard caps from it",
		History: 1, Storage: storage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", kv.Budgets, err)
	}
	return &Publisher{kv: bucket, last: map[string]string{}, caps: map[string]string{}}, nil
}

// Publish writes the records that changed since the last call.
func (p *Publisher) Publish(ctx context.Context, recs []kv.Budget) error {
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode budget %s: %w", r.Name, err)
		}
		if p.last[r.Name] == string(data) {
			continue
		}
		if _, err := p.kv.Put(ctx, r.Name, data); err != nil {
			return fmt.Errorf("store budget %s in %s: %w", r.Name, kv.Budgets, err)
		}
		p.last[r.Name] = string(data)
	}
	return nil
}

// Prune deletes the records of budgets not in names (removed from the rules file), so the
// collector stops enforcing them.
func (p *Publisher) Prune(ctx context.Context, names []*rules.Budget) error {
	seen := map[string]bool{}
	for _, b := range names {
		seen[b.Name] = true
	}
	keys, err := p.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list keys of %s: %w", kv.Budgets, err)
	}
	for k := range keys.Keys() {
		if !seen[k] && !strings.HasPrefix(k, kv.WorkflowCapPrefix) {
			if err := p.kv.Delete(ctx, k); err != nil {
				return fmt.Errorf("delete budget %s from %s: %w", k, kv.Budgets, err)
			}
			delete(p.last, k)
		}
	}
	return nil
}

// Forget drops what was published, so that the next Publish and SyncWorkflowCaps write
// every record again.
func (p *Publisher) Forget() {
	clear(p.last)
	clear(p.caps)
	p.capsKnown = false
}

// SyncWorkflowCaps makes the bucket's workflow caps exactly caps (by key, WorkflowCapKey):
// new and changed ones are written, the others deleted — those of alerts that resolved, of
// rules removed, and those a previous run left behind.
func (p *Publisher) SyncWorkflowCaps(ctx context.Context, caps map[string]kv.Budget) error {
	if !p.capsKnown {
		keys, err := p.kv.ListKeys(ctx)
		if err != nil {
			return fmt.Errorf("list keys of %s: %w", kv.Budgets, err)
		}
		for k := range keys.Keys() {
			if strings.HasPrefix(k, kv.WorkflowCapPrefix) {
				p.caps[k] = ""
			}
		}
		p.capsKnown = true
	}
	for k, r := range caps {
		data, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode workflow cap %s: %w", k, err)
		}
		if old, ok := p.caps[k]; ok && old == string(data) {
			continue
		}
		if _, err := p.kv.Put(ctx, k, data); err != nil {
			return fmt.Errorf("store workflow cap %s in %s: %w", k, kv.Budgets, err)
		}
		p.caps[k] = string(data)
	}
	for k := range p.caps {
		if _, ok := caps[k]; ok {
			continue
		}
		if err := p.kv.Delete(ctx, k); err != nil {
			return fmt.Errorf("delete workflow cap %s from %s: %w", k, kv.Budgets, err)
		}
		delete(p.caps, k)
	}
	return nil
}
