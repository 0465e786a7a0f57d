// Package budget tracks spend against budgets (monthly or custom periods, per team, feature
// or cost centre): spend so far in the period, a forecast for the period's end, the soft caps
// crossed and whether the hard cap is reached. The alerter publishes each budget's state to
// the JetStream KV bucket tokenmeter_budgets, which the collector watches to refuse or flag
// the requests of a scope over its hard cap.
//
// Forecast method: spent so far plus the recent daily run-rate times the time left. The
// run-rate is the spend of the last 7 complete days divided by 7 days once the period is at
// least 7 days old; before that it is the spend so far divided by the time elapsed since the
// period began (so a budget created on the 2nd extrapolates from one day). Every amount is an
// integer number of picodollars; the division rounds down.
package budget

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/alerter/window"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Bucket is the KV bucket of budget states; the key is the budget name.
const Bucket = "tokenmeter_budgets"

// Budget states.
const (
	StateOK         = "ok"
	StateSoft       = "soft_cap"    // at least one soft cap reached
	StateHardCapped = "hard_capped" // the hard cap is reached: the collector applies the policy
)

// Record is the JSON value in the KV bucket. Amounts are USD with 12 decimals, exact.
type Record struct {
	Name        string    `json:"name"`
	Scope       string    `json:"scope"` // "team=search"
	PeriodStart time.Time `json:"period_start"`
	LimitUSD    string    `json:"limit_usd"`
	SpentUSD    string    `json:"spent_usd"`
	ForecastUSD string    `json:"forecast_usd"`
	State       string    `json:"state"`
	// Policy (refuse or flag) and PeriodEnd complete the contract for the collector.
	Policy    string    `json:"policy"`
	PeriodEnd time.Time `json:"period_end"`
}

// Status is a budget's position at one moment.
type Status struct {
	Budget                 *rules.Budget
	PeriodStart, PeriodEnd time.Time
	Spent, Forecast        int64
	// Reached lists the soft caps (percent) reached; HardCapped whether the hard cap is.
	Reached    []int64
	HardCapped bool
}

// State is the state written to the bucket.
func (s Status) State() string {
	switch {
	case s.HardCapped:
		return StateHardCapped
	case len(s.Reached) > 0:
		return StateSoft
	}
	return StateOK
}

// Record is the bucket value of s.
func (s Status) Record() Record {
	return Record{Name: s.Budget.Name, Scope: s.Budget.Scope(), PeriodStart: s.PeriodStart, PeriodEnd: s.PeriodEnd,
		LimitUSD: pico(s.Budget.LimitPico), SpentUSD: pico(s.Spent), ForecastUSD: pico(s.Forecast),
		State: s.State(), Policy: s.Budget.Policy}
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
}

// NewTracker tracks bs; budgets of prev with the same name and scope keep their days.
func NewTracker(bs []rules.Budget, prev *Tracker) *Tracker {
	t := &Tracker{}
	for i := range bs {
		b := &bs[i]
		tr := &tracked{b: b, days: window.NewRing(max(b.PeriodDays, 31) + 8)}
		if prev != nil {
			for _, o := range prev.budgets {
				if o.b.Name == b.Name && o.b.Scope() == b.Scope() && o.days.Len() == tr.days.Len() {
					tr.days, tr.kept = o.days, true
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
			tr.days.Add(dayOf(r.Time), r.CostPico)
		}
	}
}

// AddHistory adds past spend of the named budget's scope on the day of at.
func (t *Tracker) AddHistory(name string, at time.Time, v int64) {
	for _, tr := range t.budgets {
		if tr.b.Name == name {
			tr.days.Add(dayOf(at), v)
		}
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
		if elapsed >= 7*24*time.Hour {
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
}

// OpenPublisher creates the bucket when missing, with as many replicas as the streams.
func OpenPublisher(ctx context.Context, js jetstream.JetStream, storage jetstream.StorageType) (*Publisher, error) {
	replicas, err := stream.BucketReplicas(ctx, js, Bucket)
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", Bucket, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "tokenmeter budget states by budget name; the collector enforces hard caps from it",
		History: 1, Storage: storage, Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", Bucket, err)
	}
	return &Publisher{kv: kv, last: map[string]string{}}, nil
}

// Publish writes the records that changed since the last call.
func (p *Publisher) Publish(ctx context.Context, recs []Record) error {
	for _, r := range recs {
		data, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode budget %s: %w", r.Name, err)
		}
		if p.last[r.Name] == string(data) {
			continue
		}
		if _, err := p.kv.Put(ctx, r.Name, data); err != nil {
			return fmt.Errorf("store budget %s in %s: %w", r.Name, Bucket, err)
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
		return fmt.Errorf("list keys of %s: %w", Bucket, err)
	}
	for k := range keys.Keys() {
		if !seen[k] {
			if err := p.kv.Delete(ctx, k); err != nil {
				return fmt.Errorf("delete budget %s from %s: %w", k, Bucket, err)
			}
			delete(p.last, k)
		}
	}
	return nil
}

// Forget drops what was published, so that the next Publish writes every record again.
func (p *Publisher) Forget() { clear(p.last) }
