// Package rerate recomputes the cost of stored usage events with the pricing catalogue in
// force, after a price correction or once a missing model has been added, and writes the
// difference to ClickHouse as correction rows (migrations 0020–0024) without touching
// usage_events.
//
// How it stays exact and auditable: usage_events keeps every event's cost as first priced.
// Each re-rated event gets two rows in cost_corrections — 'reverse' (the cost it stood at,
// negated, under the old model_priced and price_version) and 'apply' (the new cost, under
// the new ones) — and materialized views carry both into spend_1m and spend_1d in the same
// INSERT. Plain sum(cost_usd) over spend_1m, spend_1d or the view usage_costs is therefore
// the current cost at every moment; rerate_runs records who re-rated which range, when, with
// which catalogue.
//
// Exactly once: a plan is computed against each event's current state (its latest 'apply'
// row, or usage_events), so running the same re-rating again finds nothing to change, and a
// pass that failed half-way is completed by running it again. Two passes over overlapping
// ranges must not run at the same time.
package rerate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// Range selects events by their own time: From inclusive, To exclusive.
type Range struct{ From, To time.Time }

// Validate reports an empty or inverted range.
func (r Range) Validate() error {
	var errs []error
	if r.From.IsZero() || r.To.IsZero() {
		errs = append(errs, errors.New("range: both from and to are required"))
	} else if !r.From.Before(r.To) {
		errs = append(errs, fmt.Errorf("range: from (%s) must be before to (%s)", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

// State is what an event costs as stored: the dimensions a correction row repeats, and its
// priced state.
type State struct {
	ModelPriced   string
	Priced        bool
	Cost, Savings pricefile.PicoUSD
	Version       string
}

// Change is one event whose cost the catalogue now gives differently.
type Change struct {
	EventID                                 string
	Time                                    time.Time
	Provider, Model                         string
	Team, Feature, Env, CostCenter, Traffic string
	Tokens                                  event.Tokens
	Old, New                                State
	// Units are the event's units, sorted by key as stored; OldUnitCosts and NewUnitCosts
	// what each cost before and after, in the same order (each a part of Old.Cost and
	// New.Cost).
	Units                      []UnitCount
	OldUnitCosts, NewUnitCosts []pricefile.PicoUSD
}

// UnitCount is one unit key of an event and its count.
type UnitCount struct {
	Key   string
	Count int64
}

// Plan is what a re-rating would change.
type Plan struct {
	Range            Range
	CatalogueVersion string
	// Scanned counts the events in the range; Changes are those whose cost, savings, priced
	// state or model changes.
	Scanned int
	Changes []Change
	// VersionOnly counts events whose price and model stay and only the price_version
	// differs: they are left as they are. Unpriceable counts events the catalogue can no
	// longer price (a model removed, a date before its first price): they keep their cost,
	// since a re-rating never turns money into "unpriced".
	VersionOnly, Unpriceable int
}

// Diff is the change of cost for one team and model (as reported by the event).
type Diff struct {
	Team, Model   string
	Events        int
	Before, After pricefile.PicoUSD
}

// ByTeamAndModel sums the plan's changes per team and model, biggest absolute change first.
func (p Plan) ByTeamAndModel() []Diff {
	idx := map[[2]string]int{}
	var out []Diff
	for _, c := range p.Changes {
		k := [2]string{c.Team, c.Model}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, Diff{Team: c.Team, Model: c.Model})
		}
		out[i].Events++
		out[i].Before += c.Old.Cost
		out[i].After += c.New.Cost
	}
	slices.SortFunc(out, func(a, b Diff) int {
		da, db := abs(a.After-a.Before), abs(b.After-b.Before)
		if da != db {
			if da > db {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Team+"\x00"+a.Model, b.Team+"\x00"+b.Model)
	})
	return out
}

// Totals returns the cost of the changed events before and after.
func (p Plan) Totals() (before, after pricefile.PicoUSD) {
	for _, c := range p.Changes {
		before += c.Old.Cost
		after += c.New.Cost
	}
	return before, after
}

func abs(p pricefile.PicoUSD) pricefile.PicoUSD {
	if p < 0 {
		return -p
	}
	return p
}

// Compute reads the events of r from database db and prices each again with cat. Events the
// aggregator displaced for a better report of the same call no longer count and are skipped.
func Compute(ctx context.Context, conn driver.Conn, db string, cat *pricing.Catalog, r Range) (Plan, error) {
	if err := r.Validate(); err != nil {
		return Plan{}, err
	}
	plan := Plan{Range: r, CatalogueVersion: cat.Version()}
	current, err := currentCorrections(ctx, conn, db, r)
	if err != nil {
		return Plan{}, err
	}
	rows, err := conn.Query(ctx, `
		SELECT event_id, time, time_ms, provider, model, model_priced, service_tier, cache_hit,
		       team, feature, env, cost_center, traffic,
		       input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens,
		       cost_usd, savings_usd, priced, price_version, unit_keys, unit_counts, unit_costs_usd
		FROM `+db+`.usage_events
		WHERE time >= ? AND time < ?
		  AND event_id NOT IN (SELECT event_id FROM `+db+`.cost_corrections WHERE kind = 'displaced' AND time >= ? AND time < ?)`,
		r.From.UTC(), r.To.UTC(), r.From.UTC(), r.To.UTC())
	if err != nil {
		return Plan{}, fmt.Errorf("read usage_events of %s: %w", db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			c                                 Change
			at                                time.Time
			ms                                uint16
			tier                              string
			cacheHit, priced                  uint8
			in, out, cached, cw, cw1h, reason uint64
			cost, savings                     decimal.Decimal
			unitKeys                          []string
			unitCounts                        []uint64
			unitCosts                         []decimal.Decimal
		)
		if err := rows.Scan(&c.EventID, &at, &ms, &c.Provider, &c.Model, &c.Old.ModelPriced, &tier, &cacheHit,
			&c.Team, &c.Feature, &c.Env, &c.CostCenter, &c.Traffic,
			&in, &out, &cached, &cw, &cw1h, &reason, &cost, &savings, &priced, &c.Old.Version,
			&unitKeys, &unitCounts, &unitCosts); err != nil {
			return Plan{}, fmt.Errorf("read usage_events of %s: %w", db, err)
		}
		plan.Scanned++
		c.Time = at.UTC().Add(time.Duration(ms) * time.Millisecond)
		c.Tokens = event.Tokens{Input: int64(in), Output: int64(out), CachedInput: int64(cached), CacheWrite: int64(cw),
			CacheWrite1h: int64(cw1h), Reasoning: int64(reason)}
		c.Old.Priced = priced == 1
		if c.Old.Cost, err = pico(cost); err != nil {
			return Plan{}, fmt.Errorf("event %s cost_usd: %w", c.EventID, err)
		}
		if c.Old.Savings, err = pico(savings); err != nil {
			return Plan{}, fmt.Errorf("event %s savings_usd: %w", c.EventID, err)
		}
		if len(unitKeys) != len(unitCounts) || len(unitKeys) != len(unitCosts) {
			return Plan{}, fmt.Errorf("event %s: %d unit keys, %d counts and %d costs", c.EventID, len(unitKeys), len(unitCounts), len(unitCosts))
		}
		var units event.Units
		for i, k := range unitKeys {
			c.Units = append(c.Units, UnitCount{Key: k, Count: int64(unitCounts[i])})
			p, err := pico(unitCosts[i])
			if err != nil {
				return Plan{}, fmt.Errorf("event %s unit_costs_usd[%s]: %w", c.EventID, k, err)
			}
			c.OldUnitCosts = append(c.OldUnitCosts, p)
			if units == nil {
				units = event.Units{}
			}
			units[k] = int64(unitCounts[i])
		}
		if s, ok := current[c.EventID]; ok {
			c.Old = s.State
			if len(s.units) == len(c.Units) {
				c.OldUnitCosts = s.units
			}
		}
		q, uc := cat.PriceUnits(c.Provider, c.Model, tier, c.Time, c.Tokens, units, cacheHit == 1)
		c.New = State{ModelPriced: q.Model, Priced: q.Priced, Cost: q.Cost, Savings: q.Savings, Version: q.Version}
		c.NewUnitCosts = make([]pricefile.PicoUSD, len(c.Units))
		for i := range c.Units {
			if i < len(uc) && uc[i].Key == c.Units[i].Key {
				c.NewUnitCosts[i] = uc[i].Cost
			}
		}
		sameUnits := slices.Equal(c.OldUnitCosts, c.NewUnitCosts)
		switch {
		case !q.Priced && c.Old.Priced:
			plan.Unpriceable++
		case c.New == c.Old && sameUnits:
		case c.New.Cost == c.Old.Cost && c.New.Savings == c.Old.Savings && c.New.ModelPriced == c.Old.ModelPriced && c.New.Priced == c.Old.Priced && sameUnits:
			plan.VersionOnly++
		default:
			plan.Changes = append(plan.Changes, c)
		}
	}
	if err := rows.Err(); err != nil {
		return Plan{}, fmt.Errorf("read usage_events of %s: %w", db, err)
	}
	slices.SortFunc(plan.Changes, func(a, b Change) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.EventID, b.EventID)
	})
	return plan, nil
}

// corrected is an event's state after its latest re-rating: the State and its unit costs.
type corrected struct {
	State
	units []pricefile.PicoUSD
}

// currentCorrections returns the state of every event of r that an earlier pass re-rated:
// its 'apply' row with the highest seq.
func currentCorrections(ctx context.Context, conn driver.Conn, db string, r Range) (map[string]corrected, error) {
	rows, err := conn.Query(ctx, `
		SELECT event_id, seq, model_priced, priced, cost_usd, savings_usd, price_version, unit_costs_usd
		FROM `+db+`.cost_corrections
		WHERE kind = 'apply' AND time >= ? AND time < ?`, r.From.UTC(), r.To.UTC())
	if err != nil {
		return nil, fmt.Errorf("read cost_corrections of %s: %w", db, err)
	}
	defer rows.Close()
	type versioned struct {
		seq uint64
		s   corrected
	}
	latest := map[string]versioned{}
	for rows.Next() {
		var (
			id            string
			v             versioned
			priced        uint8
			cost, savings decimal.Decimal
			unitCosts     []decimal.Decimal
		)
		if err := rows.Scan(&id, &v.seq, &v.s.ModelPriced, &priced, &cost, &savings, &v.s.Version, &unitCosts); err != nil {
			return nil, fmt.Errorf("read cost_corrections of %s: %w", db, err)
		}
		for _, u := range unitCosts {
			p, err := pico(u)
			if err != nil {
				return nil, fmt.Errorf("correction of event %s: unit cost: %w", id, err)
			}
			v.s.units = append(v.s.units, p)
		}
		v.s.Priced = priced == 1
		if v.s.Cost, err = pico(cost); err != nil {
			return nil, fmt.Errorf("correction of event %s: %w", id, err)
		}
		if v.s.Savings, err = pico(savings); err != nil {
			return nil, fmt.Errorf("correction of event %s: %w", id, err)
		}
		if prev, ok := latest[id]; !ok || v.seq > prev.seq {
			latest[id] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cost_corrections of %s: %w", db, err)
	}
	out := make(map[string]corrected, len(latest))
	for id, v := range latest {
		out[id] = v.s
	}
	return out, nil
}

// pico converts a Decimal(38, 12) read from ClickHouse into picodollars, exactly.
func pico(d decimal.Decimal) (pricefile.PicoUSD, error) {
	p := d.Shift(12)
	if !p.Equal(p.Truncate(0)) || p.Abs().GreaterThan(decimal.New(1, 18)) {
		return 0, fmt.Errorf("%s is not a whole number of picodollars within ±1e6 USD", d)
	}
	return pricefile.PicoUSD(p.IntPart()), nil
}

func usd(p pricefile.PicoUSD) decimal.Decimal { return decimal.New(int64(p), -12) }

// Run identifies an applied pass in rerate_runs and cost_corrections.
type Run struct {
	ID        string
	AppliedAt time.Time
	// Seq orders passes; the latest 'apply' row of an event is its current cost.
	Seq       uint64
	AppliedBy string
	Note      string
}

// NewRun names a pass applied at now.
func NewRun(now time.Time, catalogueVersion, by, note string) Run {
	now = now.UTC()
	return Run{
		ID:        fmt.Sprintf("rr-%s-%s", now.Format("20060102T150405.000000000Z"), catalogueVersion),
		AppliedAt: now.Truncate(time.Second), Seq: uint64(now.UnixNano()), AppliedBy: by, Note: note,
	}
}

// maxBatch bounds the rows of one INSERT into cost_corrections.
const maxBatch = 50_000

// Apply writes the plan's corrections and its rerate_runs row. Each INSERT carries both rows
// of an event, so no block ever holds a reversal without its replacement.
func Apply(ctx context.Context, conn driver.Conn, db string, plan Plan, run Run) error {
	for start := 0; start < len(plan.Changes); start += maxBatch / 2 {
		end := min(start+maxBatch/2, len(plan.Changes))
		if err := insertCorrections(ctx, conn, db, plan.Changes[start:end], run); err != nil {
			return fmt.Errorf("rerate %s: insert corrections %d..%d of %d: %w", run.ID, start, end, len(plan.Changes), err)
		}
	}
	b, err := conn.PrepareBatch(ctx, `INSERT INTO `+db+`.rerate_runs (rerate_id, applied_at, seq, range_from, range_to,
		catalogue_version, events_scanned, events_changed, cost_before, cost_after, applied_by, note)`)
	if err != nil {
		return fmt.Errorf("rerate %s: prepare rerate_runs insert: %w", run.ID, err)
	}
	before, after := plan.Totals()
	if err := b.Append(run.ID, run.AppliedAt, run.Seq, plan.Range.From.UTC(), plan.Range.To.UTC(), plan.CatalogueVersion,
		uint64(plan.Scanned), uint64(len(plan.Changes)), usd(before), usd(after), run.AppliedBy, run.Note); err != nil {
		return fmt.Errorf("rerate %s: append rerate_runs row: %w", run.ID, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("rerate %s: insert rerate_runs row: %w", run.ID, err)
	}
	return nil
}

func insertCorrections(ctx context.Context, conn driver.Conn, db string, changes []Change, run Run) error {
	b, err := conn.PrepareBatch(ctx, `INSERT INTO `+db+`.cost_corrections (rerate_id, applied_at, seq, kind, event_id, time,
		provider, model, model_priced, team, feature, env, cost_center, traffic, events,
		input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, reasoning_tokens,
		cost_usd, savings_usd, priced, unpriced_events, price_version, unit_keys, unit_counts, unit_costs_usd)`)
	if err != nil {
		return err
	}
	for _, c := range changes {
		for _, side := range []struct {
			kind  string
			sign  int64
			s     State
			units []pricefile.PicoUSD
		}{{"reverse", -1, c.Old, c.OldUnitCosts}, {"apply", 1, c.New, c.NewUnitCosts}} {
			t := c.Tokens
			var unpriced int8
			if !side.s.Priced {
				unpriced = int8(side.sign)
			}
			keys := make([]string, len(c.Units))
			counts := make([]int64, len(c.Units))
			costs := make([]decimal.Decimal, len(c.Units))
			for i, u := range c.Units {
				keys[i], counts[i] = u.Key, side.sign*u.Count
				if i < len(side.units) {
					costs[i] = usd(pricefile.PicoUSD(side.sign) * side.units[i])
				} else {
					costs[i] = usd(0)
				}
			}
			if err := b.Append(run.ID, run.AppliedAt, run.Seq, side.kind, c.EventID, c.Time.Truncate(time.Second),
				c.Provider, c.Model, side.s.ModelPriced, c.Team, c.Feature, c.Env, c.CostCenter, c.Traffic, int8(side.sign),
				side.sign*t.Input, side.sign*t.Output, side.sign*t.CachedInput, side.sign*t.CacheWrite, side.sign*t.CacheWrite1h, side.sign*t.Reasoning,
				usd(pricefile.PicoUSD(side.sign)*side.s.Cost), usd(pricefile.PicoUSD(side.sign)*side.s.Savings),
				boolToUInt8(side.s.Priced), unpriced, side.s.Version, keys, counts, costs); err != nil {
				return err
			}
		}
	}
	return b.Send()
}

func boolToUInt8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
