// Package dispatch turns alert changes into notifications with Alertmanager's semantics:
// alerts are grouped per receiver by the route's group_by labels; a new group waits
// group_wait to gather its alerts, then is looked at every group_interval and notified when
// an alert fired, resolved, or has been firing unnotified for repeat_interval. Silenced
// alerts are held back until their silence ends; firing alerts that an inhibit rule mutes
// (a firing source alert with the same `equal` labels) are held back while it fires — a
// resolve owed to a receiver is never held back by inhibition. Each receiver sends on its own goroutine
// through its own circuit breaker, with retries and exponential back-off, so a receiver that
// is down delays nobody else.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/alerter/notify"
	"github.com/tokenmeter/tokenmeter/alerter/rules"
)

// Notifier sends one notification. retry says whether a failure may succeed if sent again.
type Notifier interface {
	Notify(ctx context.Context, m *notify.Message) (retry bool, err error)
}

// Receiver is a named notifier and the alerts it takes.
type Receiver struct {
	Name     string
	Match    map[string]string
	Notifier Notifier
}

// Sent is what a receiver was last told about an alert.
type Sent struct {
	Status string    `json:"status"`
	At     time.Time `json:"at"`
}

// Config configures a Dispatcher.
type Config struct {
	Route     rules.Route
	Receivers []Receiver
	Silences  []rules.Silence
	// InhibitRules mute firing alerts while a matching source alert fires. Every firing
	// alert the dispatcher is given can be a source, whether or not a receiver takes it.
	InhibitRules []rules.InhibitRule
	// Attempts per notification (default 3), the first back-off (default 1s, doubling) and
	// the timeout of one attempt (default 10s).
	Attempts       int
	Backoff        time.Duration
	AttemptTimeout time.Duration
	// BreakerFailures consecutive failed attempts open a receiver's breaker for BreakerOpen
	// (defaults 5 and 30s); while open, its notifications wait for the next group interval.
	BreakerFailures uint32
	BreakerOpen     time.Duration
	ExternalURL     string
	// OnSent is called, outside the dispatcher's lock, after a receiver accepted a
	// notification: the caller persists it so that a restart does not notify again.
	OnSent func(receiver string, alerts []notify.Alert, at time.Time)
	// Now and Sleep are the clock; tests inject a fake one.
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration)
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.Attempts == 0 {
		c.Attempts = 3
	}
	if c.Backoff == 0 {
		c.Backoff = time.Second
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 10 * time.Second
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpen == 0 {
		c.BreakerOpen = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Dispatcher groups alerts and sends notifications. Its methods are safe for concurrent use.
type Dispatcher struct {
	cfg      Config
	mu       sync.Mutex
	groups   map[string]*group
	breakers map[string]*gobreaker.CircuitBreaker
	busy     map[string]bool
	// firing holds the labels of every firing alert, by fingerprint: the sources of the
	// inhibit rules.
	firing map[string]map[string]string
	wg     sync.WaitGroup
}

type group struct {
	receiver  *Receiver
	key       string
	labels    map[string]string
	alerts    map[string]notify.Alert
	sent      map[string]Sent
	nextFlush time.Time
}

// New returns a dispatcher.
func New(cfg Config) *Dispatcher {
	cfg.defaults()
	d := &Dispatcher{cfg: cfg, groups: map[string]*group{}, breakers: map[string]*gobreaker.CircuitBreaker{}, busy: map[string]bool{},
		firing: map[string]map[string]string{}}
	for _, r := range cfg.Receivers {
		d.breakers[r.Name] = gobreaker.NewCircuitBreaker(gobreaker.Settings{
			Name:        "notify-" + r.Name,
			Timeout:     cfg.BreakerOpen,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakerFailures },
		})
	}
	return d
}

// NextFlush is the earliest time at which a group may next send — when Flush should run to
// send on time (group_wait after an alert first fires, rather than at the next evaluation
// after it); zero when no group waits.
func (d *Dispatcher) NextFlush() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	var next time.Time
	for _, g := range d.groups {
		if next.IsZero() || g.nextFlush.Before(next) {
			next = g.nextFlush
		}
	}
	return next
}

// SetSilences replaces the silences (after a rules reload, or a change of those made at run
// time).
func (d *Dispatcher) SetSilences(s []rules.Silence) {
	d.mu.Lock()
	d.cfg.Silences = s
	d.mu.Unlock()
}

// SetInhibitRules replaces the inhibit rules (after a rules reload).
func (d *Dispatcher) SetInhibitRules(r []rules.InhibitRule) {
	d.mu.Lock()
	d.cfg.InhibitRules = r
	d.mu.Unlock()
}

// Update records an alert's current status (firing or resolved) for every receiver that
// takes it.
func (d *Dispatcher) Update(a notify.Alert) {
	d.restore(a, nil)
}

// Restore records an alert and what each receiver was already told about it, after a
// restart.
func (d *Dispatcher) Restore(a notify.Alert, sent map[string]Sent) {
	d.restore(a, sent)
}

func (d *Dispatcher) restore(a notify.Alert, sent map[string]Sent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.cfg.Now()
	if a.Status == notify.StatusFiring {
		d.firing[a.Fingerprint] = a.Labels
	} else {
		delete(d.firing, a.Fingerprint)
	}
	for i := range d.cfg.Receivers {
		r := &d.cfg.Receivers[i]
		if !matches(r.Match, a.Labels) {
			continue
		}
		// The group key reads like Alertmanager's: receiver:{label="value",…}.
		labels := map[string]string{}
		var key strings.Builder
		key.WriteString(r.Name + ":{")
		for i, l := range d.cfg.Route.GroupBy {
			labels[l] = a.Labels[l]
			if i > 0 {
				key.WriteByte(',')
			}
			fmt.Fprintf(&key, "%s=%q", l, a.Labels[l])
		}
		key.WriteByte('}')
		g := d.groups[key.String()]
		if g == nil {
			if a.Status == notify.StatusResolved && sent == nil {
				continue // nobody was told it fired: nothing to resolve
			}
			g = &group{receiver: r, key: key.String(), labels: labels, alerts: map[string]notify.Alert{},
				sent: map[string]Sent{}, nextFlush: now.Add(d.cfg.Route.GroupWait)}
			d.groups[g.key] = g
		}
		if s, ok := sent[r.Name]; ok {
			g.sent[a.Fingerprint] = s
		}
		g.alerts[a.Fingerprint] = a
	}
}

// Holds reports whether some receiver still has to be told about the alert.
func (d *Dispatcher) Holds(fingerprint string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, g := range d.groups {
		if _, ok := g.alerts[fingerprint]; ok {
			return true
		}
	}
	return false
}

// Flush sends every notification that is due at now. Sends run in the background; Wait
// waits for them.
func (d *Dispatcher) Flush(ctx context.Context) {
	d.mu.Lock()
	now := d.cfg.Now()
	keys := make([]string, 0, len(d.groups))
	for k := range d.groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	due := map[string][]*notify.Message{}
	var order []string
	for _, k := range keys {
		g := d.groups[k]
		if now.Before(g.nextFlush) || d.busy[g.receiver.Name] {
			continue
		}
		g.nextFlush = now.Add(d.cfg.Route.GroupInterval)
		m := d.message(g, now)
		if m == nil {
			if len(g.alerts) == 0 {
				delete(d.groups, k)
			}
			continue
		}
		if due[g.receiver.Name] == nil {
			order = append(order, g.receiver.Name)
		}
		due[g.receiver.Name] = append(due[g.receiver.Name], m)
	}
	for _, name := range order {
		d.busy[name] = true
		d.wg.Add(1)
		go d.send(ctx, name, due[name])
	}
	d.mu.Unlock()
}

// message builds g's notification at now, or nil when nothing is due. Resolved alerts that
// no receiver was told about fired are dropped here.
func (d *Dispatcher) message(g *group, now time.Time) *notify.Message {
	changed := false
	var alerts []notify.Alert
	fps := make([]string, 0, len(g.alerts))
	for fp := range g.alerts {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	for _, fp := range fps {
		a := g.alerts[fp]
		s, told := g.sent[fp]
		if a.Status == notify.StatusResolved && (!told || s.Status == notify.StatusResolved) {
			delete(g.alerts, fp)
			delete(g.sent, fp)
			continue
		}
		if d.silenced(a.Labels, now) || (a.Status == notify.StatusFiring && d.inhibited(fp, a.Labels)) {
			continue
		}
		if !told || s.Status != a.Status || now.Sub(s.At) >= d.cfg.Route.RepeatInterval {
			changed = true
		}
		if a.Status == notify.StatusFiring {
			a.ValidUntil = now.Add(d.cfg.Route.RepeatInterval + d.cfg.Route.GroupInterval)
		}
		alerts = append(alerts, a)
	}
	if !changed {
		return nil
	}
	return &notify.Message{Receiver: g.receiver.Name, GroupKey: g.key, GroupLabels: g.labels, Alerts: alerts, ExternalURL: d.cfg.ExternalURL}
}

func (d *Dispatcher) silenced(labels map[string]string, now time.Time) bool {
	for i := range d.cfg.Silences {
		s := &d.cfg.Silences[i]
		if !now.Before(s.StartsAt) && now.Before(s.EndsAt) && s.Matches(labels) {
			return true
		}
	}
	return false
}

// inhibited reports whether a firing alert other than fp mutes the alert with labels
// through an inhibit rule.
func (d *Dispatcher) inhibited(fp string, labels map[string]string) bool {
	for i := range d.cfg.InhibitRules {
		r := &d.cfg.InhibitRules[i]
		if !r.TargetMatchers.Matches(labels) {
			continue
		}
		for sfp, source := range d.firing {
			if sfp != fp && r.Inhibits(source, labels) {
				return true
			}
		}
	}
	return false
}

func (d *Dispatcher) send(ctx context.Context, receiver string, msgs []*notify.Message) {
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		d.busy[receiver] = false
		d.mu.Unlock()
	}()
	var r *Receiver
	for i := range d.cfg.Receivers {
		if d.cfg.Receivers[i].Name == receiver {
			r = &d.cfg.Receivers[i]
		}
	}
	for _, m := range msgs {
		if err := d.attempt(ctx, r, m); err != nil {
			d.cfg.Logger.Warn("notification not delivered; it is sent again at the next group interval",
				"receiver", receiver, "group", m.GroupKey, "err", err)
			continue
		}
		at := d.cfg.Now()
		d.mu.Lock()
		if g := d.groups[m.GroupKey]; g != nil {
			for _, a := range m.Alerts {
				g.sent[a.Fingerprint] = Sent{Status: a.Status, At: at}
				if a.Status == notify.StatusResolved {
					if cur, ok := g.alerts[a.Fingerprint]; ok && cur.Status == notify.StatusResolved {
						delete(g.alerts, a.Fingerprint)
						delete(g.sent, a.Fingerprint)
					}
				}
			}
		}
		d.mu.Unlock()
		if d.cfg.OnSent != nil {
			d.cfg.OnSent(receiver, m.Alerts, at)
		}
	}
}

// attempt sends m through the receiver's breaker, retrying with back-off while the failure
// is worth a retry.
func (d *Dispatcher) attempt(ctx context.Context, r *Receiver, m *notify.Message) error {
	cb := d.breakers[r.Name]
	backoff := d.cfg.Backoff
	var errs []error
	for i := 0; i < d.cfg.Attempts; i++ {
		if i > 0 {
			d.cfg.Sleep(ctx, backoff)
			backoff *= 2
		}
		retry := true
		_, err := cb.Execute(func() (any, error) {
			actx, cancel := context.WithTimeout(ctx, d.cfg.AttemptTimeout)
			defer cancel()
			var err error
			retry, err = r.Notifier.Notify(actx, m)
			return nil, err
		})
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", i+1, err))
		if !retry || errors.Is(err, gobreaker.ErrOpenState) || ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// Wait waits for the sends started by Flush.
func (d *Dispatcher) Wait() { d.wg.Wait() }

func matches(matchers, labels map[string]string) bool {
	for k, v := range matchers {
		if labels[k] != v {
			return false
		}
	}
	return true
}
