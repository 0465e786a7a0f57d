package detect

import (
	"math"

	"github.com/tokenmeter/tokenmeter/alerter/window"
)

// The factors a cost increase splits into (Cause.Factor): cost = calls × tokens per call ×
// list cost per token × share of the list cost paid.
const (
	FactorVolume = "volume" // more calls
	FactorSize   = "size"   // more tokens per call
	FactorMix    = "mix"    // a higher list price per token: a costlier model, tier or token class
	FactorCache  = "cache"  // a larger share of the list price paid: fewer cache hits
)

// Cause is one factor's part in a cost increase.
type Cause struct {
	Factor string
	// Increase is the factor's part of the increase, in picodollars; the parts of an
	// explanation sum exactly to the increase (a part can be negative: a factor that fell).
	Increase int64
	// ShareMilli is Increase as a share of the increase, in thousandths of a percent (rounded
	// toward zero).
	ShareMilli int64
	// Before and Now are the factor's values, for display: calls in the window (Before at the
	// baseline's level), tokens per call, list USD per million tokens, percent of the list
	// cost paid.
	Before, Now float64
}

// Explain splits a group's cost increase over minutes from..to into volume, size, mix and
// cache. The baseline is the cost the window is judged against (a change rule's median), or
// the window just before when baseline is negative; the baseline's calls, tokens and prices
// are those of the window just before, scaled to its cost. The split is the log-mean Divisia
// index (LMDI-I), the decomposition of a product of factors that sums exactly and leaves no
// residual: each factor's part is L(now, baseline) · ln(factor now / factor before), where
// L(a, b) = (a − b) / (ln a − ln b). The parts are rounded to the picodollar, the rounding
// left over going to the largest, so that they sum to the increase exactly.
//
// It returns nil when there is no increase, or when either window lacks calls, tokens or a
// list price to split by (after a restart, the window before may be known only as a total).
func Explain(p *window.Profile, baseline, from, to int64) []Cause {
	w := to - from + 1
	now, before := p.Sum(from, to), p.Sum(from-w, from-1)
	if baseline < 0 {
		baseline = before.Cost
	}
	increase := now.Cost - baseline
	for _, v := range [...]int64{increase, baseline, now.Calls, now.Tokens, now.ListCost, now.Cost, before.Calls, before.Tokens, before.ListCost, before.Cost} {
		if v <= 0 {
			return nil
		}
	}
	f := func(v int64) float64 { return float64(v) }
	factors := func(s window.Sums, calls float64) [4]float64 {
		return [4]float64{calls, f(s.Tokens) / f(s.Calls), f(s.ListCost) / f(s.Tokens), f(s.Cost) / f(s.ListCost)}
	}
	x0 := factors(before, f(before.Calls)*f(baseline)/f(before.Cost))
	x1 := factors(now, f(now.Calls))
	c0, c1 := f(baseline), f(now.Cost)
	lm := (c1 - c0) / (math.Log(c1) - math.Log(c0))
	out := make([]Cause, 4)
	var sum int64
	largest := 0
	for i, name := range [...]string{FactorVolume, FactorSize, FactorMix, FactorCache} {
		part := int64(math.Round(lm * math.Log(x1[i]/x0[i])))
		out[i] = Cause{Factor: name, Increase: part, Before: x0[i], Now: x1[i]}
		sum += part
		if abs(part) > abs(out[largest].Increase) {
			largest = i
		}
	}
	out[largest].Increase += increase - sum
	for i := range out {
		out[i].ShareMilli = mulDivSigned(out[i].Increase, 100_000, increase)
		switch out[i].Factor {
		case FactorMix: // picodollars per token → USD per million tokens
			out[i].Before, out[i].Now = out[i].Before/1e6, out[i].Now/1e6
		case FactorCache:
			out[i].Before, out[i].Now = 100*out[i].Before, 100*out[i].Now
		}
	}
	return out
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
