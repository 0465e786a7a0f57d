package loadgen

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Config shapes the generated traffic. Start from DefaultConfig and change what a run needs;
// call Validate before New.
type Config struct {
	// Seed makes the stream reproducible: the same Config gives byte-identical items.
	Seed uint64
	// Now is the end of the simulated traffic: no valid event is stamped after it. Inject it;
	// a receiver rejects events older than event.DefaultLimits.MaxAge or more than MaxFuture
	// ahead of its own clock, so for a live run Now should be close to the receiver's clock.
	Now time.Time
	// Span is how much event time the simulated clock covers: it starts at Now-Span, advances
	// with every new event and wraps around to Now-Span when it reaches Now, so a run longer
	// than the span revisits the same event times (with new ids).
	Span time.Duration
	// EventsPerDay is the mean traffic of the simulated fleet; with the diurnal shape it
	// decides how far the clock advances per event. A run of N events covers N/EventsPerDay
	// days of event time.
	EventsPerDay float64
	// Teams is the number of simulated teams, each with 3 to 5 features.
	Teams int

	// DuplicateShare is the share of all items that are an exact copy of an earlier valid
	// event (same id, same bytes), as a client retrying after a lost answer sends it.
	DuplicateShare float64
	// InvalidShare is the share of all items that break one validation rule; the rules are
	// cycled through so every one of them is exercised.
	InvalidShare float64
	// UnknownModelShare is the share of valid events naming a model no catalogue knows
	// (UnknownModel); they must be stored unpriced, not rejected.
	UnknownModelShare float64
	// LateShare is the share of valid events stamped LateMin..LateMax before the simulated
	// clock, as a service that buffered them during an outage sends them.
	LateShare        float64
	LateMin, LateMax time.Duration

	// Spike, when its Multiplier is above 1, multiplies the traffic of one team on one model
	// during a window of event time, for anomaly detection and alert tests.
	Spike Spike
}

// Spike multiplies the event rate of Team on Model (a base name such as "claude-opus-4-1";
// its dated snapshots count too) by Multiplier while the event time is in [From, To). The
// rest of the traffic keeps its rate.
type Spike struct {
	Team       string
	Model      string
	From, To   time.Time
	Multiplier float64
}

// DefaultConfig returns the traffic mix used by the benchmarks: 12 teams, a day of event time
// ending at now, 1% duplicates, 0.5% invalid events, 0.2% unknown models, 2% late events
// and no spike.
func DefaultConfig(now time.Time) Config {
	return Config{
		Seed:              1,
		Now:               now,
		Span:              24 * time.Hour,
		EventsPerDay:      1_000_000,
		Teams:             12,
		DuplicateShare:    0.01,
		InvalidShare:      0.005,
		UnknownModelShare: 0.002,
		LateShare:         0.02,
		LateMin:           time.Hour,
		LateMax:           6 * time.Hour,
	}
}

// MaxTeams bounds Config.Teams; beyond the named teams, teams are called team-NN.
const MaxTeams = 1000

// Validate reports every problem of the config at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Now.IsZero() {
		bad("now is not set; inject the end of the simulated traffic")
	}
	if c.Span <= 0 {
		bad("span (%s) must be positive", c.Span)
	}
	if !(c.EventsPerDay > 0) {
		bad("events per day (%v) must be positive", c.EventsPerDay)
	}
	if c.Teams < 1 || c.Teams > MaxTeams {
		bad("teams (%d) must be within [1, %d]", c.Teams, MaxTeams)
	}
	for _, s := range [...]struct {
		name string
		v    float64
	}{
		{"duplicate share", c.DuplicateShare}, {"invalid share", c.InvalidShare},
		{"unknown model share", c.UnknownModelShare}, {"late share", c.LateShare},
	} {
		if !(s.v >= 0 && s.v <= 1) {
			bad("%s (%v) must be within [0, 1]", s.name, s.v)
		}
	}
	if c.DuplicateShare+c.InvalidShare >= 1 {
		bad("duplicate share (%v) + invalid share (%v) must be below 1, or no new valid event is ever generated",
			c.DuplicateShare, c.InvalidShare)
	}
	if c.LateShare > 0 && (c.LateMin <= 0 || c.LateMax < c.LateMin) {
		bad("late events need 0 < late min (%s) <= late max (%s)", c.LateMin, c.LateMax)
	}
	if age := c.Span + c.LateMax; age >= event.DefaultLimits.MaxAge {
		bad("span (%s) + late max (%s) must stay below the receiver's max age (%s), or valid events would be rejected as too old",
			c.Span, c.LateMax, event.DefaultLimits.MaxAge)
	}
	if c.Spike.Multiplier != 0 {
		errs = append(errs, c.Spike.validate(c.Teams)...)
	}
	return errors.Join(errs...)
}

func (s Spike) validate(teams int) []error {
	var errs []error
	if !(s.Multiplier >= 1) {
		errs = append(errs, fmt.Errorf("spike multiplier (%v) must be at least 1", s.Multiplier))
	}
	if !s.From.Before(s.To) {
		errs = append(errs, fmt.Errorf("spike window [%s, %s) is empty",
			s.From.Format(time.RFC3339), s.To.Format(time.RFC3339)))
	}
	if teamIndex(s.Team, teams) < 0 {
		errs = append(errs, fmt.Errorf("spike team %q is not one of the %d generated teams (%s)",
			s.Team, teams, teamName(0)+", "+teamName(1)+", …"))
	}
	if modelIndex(s.Model) < 0 {
		errs = append(errs, fmt.Errorf("spike model %q is not a base model of the generator (e.g. %s)",
			s.Model, models[0].name))
	}
	return errs
}
