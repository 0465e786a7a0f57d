// Package loadgen generates realistic, reproducible v1 usage events for benchmarks and
// end-to-end tests: many teams and features, a popularity-weighted mix of OpenAI and Anthropic
// models, long-tailed token counts with prompt caching and reasoning, a diurnal traffic
// shape, and the faults a real fleet produces — duplicates, late events, unknown models and
// invalid events.
//
// A Generator is not safe for concurrent use; give each goroutine its own (with its own Seed,
// or the streams repeat each other's ids).
package loadgen

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Kind says what the receiver must do with an item.
type Kind uint8

const (
	// Valid is a new event that must be accepted and counted once.
	Valid Kind = iota
	// Duplicate re-sends an earlier Valid item byte for byte: accepted, but not counted again.
	Duplicate
	// Invalid breaks a validation rule and must be rejected with a per-event error.
	Invalid
)

func (k Kind) String() string {
	switch k {
	case Valid:
		return "valid"
	case Duplicate:
		return "duplicate"
	case Invalid:
		return "invalid"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Item is one generated event and its wire form.
//
// JSON is what is sent. For Valid and Duplicate items Event is exactly what the receiver
// decodes from it, already normalized (UTC, millisecond time, service tier and status set),
// so a test can compare stored events with it field by field. For Invalid items Event is only
// the event the JSON was derived from; some violations (a missing field, a wrong type) cannot
// be expressed in an event.Usage. Items must be treated as read-only.
type Item struct {
	Event event.Usage
	JSON  []byte
	Kind  Kind
}

// historySize bounds how far back a duplicate reaches: far enough to straddle batches and
// JetStream's de-duplication window at benchmark rates, small enough to stay in cache.
const historySize = 4096

// Generator produces an endless stream of items. Its zero value is not usable; call New.
type Generator struct {
	cfg      Config
	rng      *rand.Rand
	idPrefix string // evt_<seed>_
	ridInfix string // <seed>x, inside provider response ids

	teams      []team
	teamCum    []float64
	modelCum   [len(models)]float64
	perSecond  [24]float64 // mean events per second of event time, per hour of the day
	spikeTeam  int
	spikeModel int
	spikeExtra float64 // the spike's extra rate as a share of the normal rate

	clock   time.Time // the simulated time of the newest event
	n       uint64    // new events so far (valid and invalid); the id counter
	invalid int       // invalid events so far; selects the next rule

	history []Item // recent Valid items, a ring, for duplicates
	histPos int
}

type team struct {
	name, costCenter string
	features         []teamFeature
	featureCum       []float64
}

type teamFeature struct {
	*feature
	// prompt is the current prompt version, prevPrompt the one still being rolled out of.
	prompt, prevPrompt string
}

// New returns a generator for cfg, which should have passed Validate: New does not check it,
// and a nonsensical config gives a nonsensical stream.
func New(cfg Config) *Generator {
	g := &Generator{
		cfg:        cfg,
		rng:        rand.New(rand.NewPCG(cfg.Seed, 0x746f6b656e6d6574)), // "tokenmet"
		idPrefix:   "evt_" + strconv.FormatUint(cfg.Seed, 10) + "_",
		ridInfix:   strconv.FormatUint(cfg.Seed, 36) + "x",
		spikeTeam:  -1,
		spikeModel: -1,
		clock:      cfg.Now.UTC().Add(-cfg.Span),
		history:    make([]Item, 0, historySize),
	}
	g.buildTeams(max(cfg.Teams, 1))
	total := 0.0
	for i, m := range models {
		total += m.weight
		g.modelCum[i] = total
	}
	// Scale the hourly weights so that a whole day holds EventsPerDay events.
	sum := 0.0
	for _, w := range hourWeight {
		sum += w
	}
	for h, w := range hourWeight {
		g.perSecond[h] = cfg.EventsPerDay * (w / sum) / 3600
	}
	if s := cfg.Spike; s.Multiplier > 1 {
		g.spikeTeam, g.spikeModel = teamIndex(s.Team, len(g.teams)), modelIndex(s.Model)
		if g.spikeTeam >= 0 && g.spikeModel >= 0 {
			pt := (g.teamCum[g.spikeTeam] - cumBefore(g.teamCum, g.spikeTeam)) / g.teamCum[len(g.teamCum)-1]
			pm := models[g.spikeModel].weight / total
			g.spikeExtra = (s.Multiplier - 1) * pt * pm
		}
	}
	return g
}

func cumBefore(cum []float64, i int) float64 {
	if i == 0 {
		return 0
	}
	return cum[i-1]
}

// buildTeams gives every team 3 to 5 distinct features and a Zipf-like share of the traffic:
// a few teams spend most of the money.
func (g *Generator) buildTeams(n int) {
	g.teams = make([]team, n)
	g.teamCum = make([]float64, n)
	total := 0.0
	for i := range g.teams {
		t := &g.teams[i]
		t.name = teamName(i)
		t.costCenter = "cc-" + strconv.Itoa(100+i)
		perm := g.rng.Perm(len(features))
		nf := 3 + g.rng.IntN(3)
		t.features = make([]teamFeature, nf)
		t.featureCum = make([]float64, nf)
		ftotal := 0.0
		for j := range nf {
			f := &features[perm[j]]
			v := 2 + g.rng.IntN(12)
			t.features[j] = teamFeature{
				feature:    f,
				prompt:     f.name + "@v" + strconv.Itoa(v),
				prevPrompt: f.name + "@v" + strconv.Itoa(v-1),
			}
			ftotal += 1 / float64(j+1)
			t.featureCum[j] = ftotal
		}
		total += 1 / math.Pow(float64(i+1), 0.8)
		g.teamCum[i] = total
	}
}

// Next returns the next item of the stream.
func (g *Generator) Next() Item {
	r := g.rng.Float64()
	switch {
	case r < g.cfg.DuplicateShare:
		if len(g.history) > 0 {
			return g.duplicate()
		}
	case r < g.cfg.DuplicateShare+g.cfg.InvalidShare:
		return g.invalidItem()
	}
	u := g.event()
	it := Item{Event: u, JSON: appendEvent(make([]byte, 0, 512), &u), Kind: Valid}
	g.remember(it)
	return it
}

func (g *Generator) remember(it Item) {
	if len(g.history) < historySize {
		g.history = append(g.history, it)
		return
	}
	g.history[g.histPos] = it
	g.histPos = (g.histPos + 1) % historySize
}

// duplicate copies an earlier valid item, so that a caller modifying one cannot change the
// other.
func (g *Generator) duplicate() Item {
	orig := g.history[g.rng.IntN(len(g.history))]
	d := Item{Event: orig.Event, JSON: append([]byte(nil), orig.JSON...), Kind: Duplicate}
	d.Event.Tags = make(map[string]string, len(orig.Event.Tags))
	for k, v := range orig.Event.Tags {
		d.Event.Tags[k] = v
	}
	return d
}

// tick advances the simulated clock by one inter-arrival time of a Poisson process whose rate
// follows the hour of the day, and reports whether the new time is inside the spike window.
func (g *Generator) tick() (time.Time, bool) {
	rate := g.perSecond[g.clock.Hour()]
	spike := g.spikeExtra > 0 && !g.clock.Before(g.cfg.Spike.From) && g.clock.Before(g.cfg.Spike.To)
	if spike {
		rate *= 1 + g.spikeExtra
	}
	g.clock = g.clock.Add(time.Duration(g.rng.ExpFloat64() / rate * float64(time.Second)))
	if !g.clock.Before(g.cfg.Now) {
		g.clock = g.clock.Add(-g.cfg.Span)
	}
	return g.clock.Truncate(time.Millisecond), spike
}

func (g *Generator) pick(cum []float64) int {
	r := g.rng.Float64() * cum[len(cum)-1]
	for i, c := range cum {
		if r < c {
			return i
		}
	}
	return len(cum) - 1
}

// lognormal draws from a log-normal distribution with the given median: most calls are
// near it, and a long right tail makes the few calls that dominate a bill.
func (g *Generator) lognormal(median, sigma float64, lo, hi int64) int64 {
	v := int64(median * math.Exp(sigma*g.rng.NormFloat64()))
	return min(max(v, lo), hi)
}

// event makes a new valid event.
func (g *Generator) event() event.Usage {
	at, inSpike := g.tick()
	seq := strconv.AppendUint(nil, g.n, 10)
	g.n++

	var ti, mi int
	if inSpike && g.rng.Float64() < g.spikeExtra/(1+g.spikeExtra) {
		ti, mi = g.spikeTeam, g.spikeModel
	} else {
		ti, mi = g.pick(g.teamCum), g.pick(g.modelCum[:])
	}
	t := &g.teams[ti]
	f := &t.features[g.pick(t.featureCum)]
	m := &models[mi]

	u := event.Usage{
		ID:          g.idPrefix + string(seq),
		Time:        at,
		Provider:    m.provider,
		Model:       m.name,
		Operation:   "chat",
		ServiceTier: event.TierStandard,
		Status:      event.StatusOK,
	}
	if g.rng.Float64() < 0.25 {
		u.Model = m.snapshot
	}
	if g.rng.Float64() < g.cfg.UnknownModelShare {
		u.Provider, u.Model = UnknownProvider, UnknownModel
	}
	if g.rng.Float64() < g.cfg.LateShare {
		late := g.cfg.LateMin + time.Duration(g.rng.Int64N(int64(g.cfg.LateMax-g.cfg.LateMin)+1))
		u.Time = u.Time.Add(-late).Truncate(time.Millisecond)
	}

	env := "prod"
	switch r := g.rng.Float64(); {
	case r < 0.05:
		env = "dev"
	case r < 0.20:
		env = "staging"
	}
	traffic := "user"
	if g.rng.Float64() < 0.3 {
		traffic = "background"
		if g.rng.Float64() < 0.35 {
			u.ServiceTier = event.TierBatch
		}
	}
	u.Tags = map[string]string{
		event.TagTeam: t.name, event.TagFeature: f.name, event.TagEnv: env,
		event.TagCostCenter: t.costCenter, event.TagTraffic: traffic,
	}
	if g.rng.Float64() < 0.2 {
		u.Tags["region"] = "eu-west-1"
	}
	if g.rng.Float64() < f.workflowShare {
		// A handful of workflows run at once per feature and each lasts about five
		// minutes, so consecutive calls share workflow ids the way agent runs do.
		wf := at.Unix()/300*10 + g.rng.Int64N(10)
		u.WorkflowID = f.workflowKind + "-" + t.name + "-" + strconv.FormatInt(wf, 10)
	}
	u.PromptVersion = f.prompt
	if g.rng.Float64() < 0.1 {
		u.PromptVersion = f.prevPrompt
	}

	g.tokens(&u.Usage, f.feature, m)
	g.outcome(&u, m, seq)
	return u
}

// tokens draws the token counts. Caching follows the providers' rules closely enough for
// pricing: OpenAI caches automatically in 128-token steps from 1024 tokens on; Anthropic
// reads and writes explicit cache breakpoints, some of them with the one-hour lifetime.
func (g *Generator) tokens(t *event.Tokens, f *feature, m *model) {
	t.Input = g.lognormal(f.inMedian, f.inSigma, 1, 400_000)
	t.Output = g.lognormal(f.outMedian, 0.9, 1, 32_000)
	if m.reasoning && g.rng.Float64() < 0.9 {
		// Reasoning comes on top of the visible answer and is billed as output.
		t.Reasoning = int64(float64(t.Output) * (0.5 + 3.5*g.rng.Float64()))
		t.Output += t.Reasoning
	}
	if t.Input < 1024 {
		return
	}
	switch m.provider {
	case openai:
		if g.rng.Float64() < 0.4 {
			t.CachedInput = max(1024, int64(float64(t.Input)*(0.3+0.65*g.rng.Float64()))/128*128)
		}
	case anthropic:
		if g.rng.Float64() < 0.35 {
			t.CachedInput = int64(float64(t.Input) * (0.3 + 0.6*g.rng.Float64()))
		}
		if g.rng.Float64() < 0.15 {
			t.CacheWrite = int64(float64(t.Input-t.CachedInput) * (0.2 + 0.7*g.rng.Float64()))
			if g.rng.Float64() < 0.25 {
				t.CacheWrite1h = t.CacheWrite
				if g.rng.Float64() < 0.5 {
					t.CacheWrite1h /= 2
				}
			}
		}
	}
}

// outcome sets what the call's answer says: the response id, the latency, and the rare
// application cache hit or failed call.
func (g *Generator) outcome(u *event.Usage, m *model, seq []byte) {
	switch r := g.rng.Float64(); {
	case r < 0.01:
		// Answered from the application's own cache: no provider call, no response id.
		u.CacheHit = true
		u.LatencyMS = 2 + g.rng.Int64N(30)
		return
	case r < 0.015:
		u.Status = [...]string{"rate_limited", "timeout", "server_error"}[g.rng.IntN(3)]
		u.Usage.Output, u.Usage.Reasoning = 0, 0
	}
	switch u.Provider {
	case openai:
		u.ResponseID = "chatcmpl-" + g.ridInfix + string(seq)
	case anthropic:
		u.ResponseID = "msg_" + g.ridInfix + string(seq)
	default:
		u.ResponseID = "resp-" + g.ridInfix + string(seq)
	}
	msPerToken := 8.0
	if m.reasoning {
		msPerToken = 12
	}
	lat := 150 + float64(u.Usage.Output)*msPerToken*(0.6+0.8*g.rng.Float64())
	if u.ServiceTier == event.TierBatch {
		// Batch jobs finish within hours; latency is the time to the result.
		lat = float64(g.lognormal(20*60*1000, 1, 60_000, event.MaxLatency))
	}
	u.LatencyMS = min(int64(lat), event.MaxLatency)
}
