package window

import "github.com/tokenmeter/tokenmeter/schemas/batch"

// Profile is what a group's cost is made of, per minute: calls, tokens, the cost at list
// prices (what was paid plus what caching saved) and the cost paid. Cost = calls × tokens per
// call × list cost per token × share of the list cost paid, so a change of cost splits into
// volume, size, mix and cache (see detect.Explain).
type Profile struct {
	Calls, Tokens, ListCost, Cost *Ring
}

// NewProfile returns a profile keeping n minute buckets.
func NewProfile(n int) *Profile {
	return &Profile{Calls: NewRing(n), Tokens: NewRing(n), ListCost: NewRing(n), Cost: NewRing(n)}
}

// Add counts row at minute m.
func (p *Profile) Add(m int64, r *batch.Row) {
	p.Calls.Add(m, 1)
	p.Tokens.Add(m, r.Tokens.Input+r.Tokens.Output)
	p.ListCost.Add(m, r.CostPico+r.SavingsPico)
	p.Cost.Add(m, r.CostPico)
}

// Sums is a profile summed over minutes.
type Sums struct{ Calls, Tokens, ListCost, Cost int64 }

// Sum sums minutes from..to, inclusive.
func (p *Profile) Sum(from, to int64) Sums {
	return Sums{p.Calls.Sum(from, to), p.Tokens.Sum(from, to), p.ListCost.Sum(from, to), p.Cost.Sum(from, to)}
}
