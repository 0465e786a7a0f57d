// Package dedup decides which rows of a batch are new to ClickHouse (Filter), for the
// aggregator's single writer of a partition: an event id never reaches usage_events twice,
// a second copy whose content differs is recognised as a conflict, and one call reported by
// two emitters under different event ids (one provider response) is written once.
//
// A Filter keeps, per partition, compact sets (keyset.Set) of the ids and provider responses
// written within a window, 40 bits of each: a key absent from a set is absent from ClickHouse (for the
// hours the set vouches for), and a key present is confirmed in ClickHouse (Store), which also
// gives the stored copy's content fingerprint. A false positive costs a lookup, never an event.
package dedup

import (
	"context"
	"slices"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/stage/keyset"
)

// ResponseSkew is how far apart two reports of one provider call may be timed by their
// emitters' clocks (a proxy's and an SDK's) and still be found in ClickHouse as one call.
const ResponseSkew = 5 * time.Minute

// Ref names what a Store looks up: an event id or a provider response id, and the span of
// event time (inclusive, to the second) in which its stored copy may be timed. The span bounds
// the lookup's scan: usage_events is ordered by the hour of the event's time.
type Ref struct {
	ID       string
	From, To time.Time
}

// Store is what a Filter needs of ClickHouse: the events its partition's writer stored. An
// implementation retries as it sees fit and returns an error only when it gives up (the
// writer's context ended); fn may then have been called with part of the answer, or twice.
type Store interface {
	// Events calls fn with the id and content fingerprint (usage_events.content_fp) of the
	// stored events of the partition whose id is a ref's, timed within that ref's span.
	Events(ctx context.Context, refs []Ref, fn func(id string, fp uint64)) error
	// Responses calls fn with each stored report of the partition whose response id is a
	// ref's, timed within that ref's span: its Provider, ResponseID, ID, Source, Time, Tokens,
	// Model and Team, and whether a later report of higher rank displaced it (Decision). The
	// filter matches the provider (case aside, as ResponseKeyOf).
	Responses(ctx context.Context, refs []Ref, fn func(stored batch.Row, displaced bool)) error
}

// Decision is the choice between two reports of one provider call (one provider and
// response id under two event ids) that say different things, or of which the later
// outranks the earlier (batch.Row.Outranks): Kept is the one that counts, Dropped the other.
// When Displaced, Dropped was stored already: the caller takes it out of the roll-ups before
// it writes Kept. The caller records every decision.
type Decision struct {
	Kept, Dropped batch.Row
	Displaced     bool
}

// differ reports whether two reports of one call say different things about money or
// attribution (and so their choice is recorded, not only counted).
func differ(a, b *batch.Row) bool {
	return a.Tokens != b.Tokens || a.Model != b.Model || a.Team != b.Team
}

// Conflict is a copy of an event whose id is already stored (or earlier in the batch) with
// different content. The first copy is kept; this one is dropped, for the caller to report.
type Conflict struct {
	Row         batch.Row
	Stored, Got uint64 // content fingerprints of the kept copy and of this one
}

// Counts says what a call of a Filter dropped and looked up.
type Counts struct {
	Duplicates         int // copies of an id stored, or earlier in the batch, with the same content
	ResponseDuplicates int // reports of a provider response dropped for another under another id
	Displaced          int // stored reports displaced by one of higher rank
	// IDLookups and ResponseLookups count the refs looked up because the sets cannot vouch
	// for the rows' hours; IDConfirms and ResponseConfirms those the sets found, confirmed.
	IDLookups, IDConfirms, ResponseLookups, ResponseConfirms int
	// IDRecalled counts the ids the sets found that were among the last events written
	// (recent), so that no lookup was needed.
	IDRecalled int
}

// Filter decides, for the single writer of a partition, which rows of a batch ClickHouse does
// not hold yet. The writer's cycle is
//
//	fresh := Fresh(batch)      // what is new
//	insert fresh               // on an error of unknown outcome: fresh = Landed(fresh), again
//	Remember(fresh)            // only once ClickHouse holds it
//	ack the batch
//
// and it writes every event id, and every provider response, at most once:
//
//   - An id or response in the sets is looked up in ClickHouse (a false positive of the
//     40-bit tags costs that lookup), in the hours of event time the sets recorded for it;
//     the lookup also gives the stored copy's content fingerprint, so a copy with other
//     content is a Conflict, not a duplicate. An id among the last 65,536 written is
//     recalled with its fingerprint instead (recent), without a lookup.
//   - One absent from the sets is absent from ClickHouse when the sets vouch for its hour
//     (Set.Vouches: nothing timed in it left the sets, or was written around them);
//     otherwise it is looked up near its own time (ResponseSkew around it for a response).
//   - Copies within the batch are compared with the first by their whole 128-bit Key.
//   - Remember runs after the INSERT succeeded, so the sets never hold what ClickHouse does
//     not; a writer that dies before Remember rebuilds the sets from ClickHouse (Load).
//
// It is not safe for concurrent use.
type Filter struct {
	ids, resp *keyset.Set
	store     Store
	// seen holds ids of the batch being filtered, in Fresh's last pass, with the content
	// fingerprint of the row kept; seenResp its responses, with the index in the fresh rows
	// of the report kept. Only rows another row of the batch shares an id or response with
	// need them (see repeat).
	seen     map[keyset.Key]uint64
	seenResp map[keyset.Key]int
	// repeat marks the rows of the batch whose id an earlier row has, later those whose id
	// a later row has; respRepeat and respLater the same of their responses, among the rows
	// whose id is not stored. Only such rows need seen and seenResp in the last pass, which
	// so stay small.
	repeat, later, respRepeat, respLater []bool
	// maybeStored marks the rows whose id the first pass looked up or recalled (and the
	// repeats, whose first may be such): only their ids can be in Fresh's stored.
	maybeStored []bool
	// batchIDs and batchResps are the first two passes' tables of the batch's ids and
	// responses, seen and seenResp the last pass's (which only some rows need).
	batchIDs, batchResps index
	// keys and rkeys hold the id and response keys of the rows Fresh or Remember works on,
	// reused from batch to batch (1 MB each for 64,000 rows).
	keys, rkeys []keyset.Key
	// written holds, for each row Fresh returned (and Landed kept of them), what Remember
	// records of it: hashing a row again there cost as much as Fresh's own hashing.
	written []written
	// remembered is Remember's scratch: what it records of each row.
	remembered []written
	recent     *recent
}

// written is what Remember records of a row: its id's key and content fingerprint, and its
// response's key (zero without a response id), with the id they were computed for.
type written struct {
	id      string
	key, rk keyset.Key
	fp      uint64
}

// writtenAt is what Remember records of r, the i-th row given: what Fresh computed when r is
// the i-th row it returned (or Landed kept), else computed now.
func (f *Filter) writtenAt(i int, r *batch.Row) written {
	if i < len(f.written) && f.written[i].id == r.ID {
		return f.written[i]
	}
	w := written{id: r.ID, key: keyset.KeyOf(r.ID), fp: Fingerprint(r)}
	if r.ResponseID != "" {
		w.rk = keyset.ResponseKeyOf(r.Provider, r.ResponseID)
	}
	return w
}

// NewFilter returns a filter with empty sets of the given window, looking up in store.
func NewFilter(window time.Duration, now func() time.Time, store Store) *Filter {
	return &Filter{
		ids: keyset.New(window, now), resp: keyset.New(window, now), store: store,
		seen: make(map[keyset.Key]uint64), seenResp: make(map[keyset.Key]int), recent: newRecent(),
	}
}

// SetMaxKeys bounds each of the filter's two sets to about n keys (Set.SetMaxKeys), never
// dropping what was kept within keep.
func (f *Filter) SetMaxKeys(n int, keep time.Duration) {
	f.ids.SetMaxKeys(n, keep)
	f.resp.SetMaxKeys(n, keep)
}

// Floor is the start of the window the sets cover (Set.Floor).
func (f *Filter) Floor() time.Time { return f.ids.Floor() }

// Len returns the number of ids and of responses in the sets.
func (f *Filter) Len() (ids, responses int) { return f.ids.Len(), f.resp.Len() }

// Expire drops what left the window from the sets and returns how many ids and responses.
func (f *Filter) Expire() (ids, responses int) { return f.ids.Expire(), f.resp.Expire() }

// Load records an event that ClickHouse holds, received at ingested: what the writer reads
// at start-up (events ingested, or timed, within the window).
func (f *Filter) Load(id, provider, responseID string, ingested, eventTime time.Time) {
	var rk keyset.Key
	if responseID != "" {
		rk = keyset.ResponseKeyOf(provider, responseID)
	}
	f.load(keyset.KeyOf(id), rk, responseID != "", ingested, eventTime)
}

// load records an id's key, and its response's key rk when hasResponse.
func (f *Filter) load(key, rk keyset.Key, hasResponse bool, ingested, eventTime time.Time) {
	at := KeptFrom(ingested, eventTime)
	f.ids.Add(key, at, eventTime)
	if hasResponse {
		f.resp.Add(rk, at, eventTime)
	}
}

// Uncover marks the hour of eventTime as one the sets cannot vouch for: ClickHouse holds an
// event timed in it that they do not (read at start-up, from before the window).
func (f *Filter) Uncover(eventTime time.Time) {
	f.ids.Uncover(eventTime)
	f.resp.Uncover(eventTime)
}

// Remember records rows as written: call it once ClickHouse holds them. For the rows Fresh
// returned, or Landed kept of them, it uses the keys Fresh computed; any other row is hashed.
func (f *Filter) Remember(rows []batch.Row) {
	f.remembered = slices.Grow(f.remembered[:0], len(rows))[:len(rows)]
	f.keys = slices.Grow(f.keys[:0], len(rows))[:len(rows)]
	f.rkeys = slices.Grow(f.rkeys[:0], len(rows))[:len(rows)]
	for i := range rows {
		w := f.writtenAt(i, &rows[i])
		f.remembered[i], f.keys[i], f.rkeys[i] = w, w.key, w.rk
	}
	ids, resps := f.ids.Ahead(f.keys), f.resp.Ahead(f.rkeys)
	for i, w := range f.remembered {
		ids.At(i)
		resps.At(i)
		r := &rows[i]
		f.recent.add(w.key, w.fp)
		f.load(w.key, w.rk, r.ResponseID != "", r.Received, r.Time)
	}
	f.written = f.written[:0]
}

// Fresh returns the rows of batch that ClickHouse does not hold, reusing batch's array: it
// drops copies of stored ids (a copy with other content is returned as a Conflict) and
// repeats of an earlier row of the batch. Of two reports of one provider call under different
// ids — stored or earlier in the batch — it keeps the better (batch.Row.Outranks: a higher
// source rank, then more detail; else the first), and returns the Decision when they differ
// or the later won. A stored report that a report of the batch outranks is Displaced. It
// returns an error only when a lookup gave up.
//
// It looks up, in one call each, the ids and then the responses it must ask ClickHouse
// about, and then decides row by row in the batch's order.
func (f *Filter) Fresh(ctx context.Context, rows []batch.Row) ([]batch.Row, []Conflict, []Decision, Counts, error) {
	var c Counts
	f.keys = slices.Grow(f.keys[:0], len(rows))[:len(rows)]
	keys := f.keys
	for _, flags := range []*[]bool{&f.repeat, &f.later, &f.respRepeat, &f.respLater, &f.maybeStored} {
		*flags = slices.Grow((*flags)[:0], len(rows))[:len(rows)]
		clear(*flags)
	}
	var refs []Ref
	stored := make(map[string]uint64)
	floor := f.ids.Floor()
	for i := range rows {
		keys[i] = keyset.KeyOf(rows[i].ID)
	}
	// The sets are larger than the cache: their slots are touched a chunk ahead of the
	// probes, whose waits for memory then overlap (keyset.Ahead), here and below.
	ahead := f.ids.Ahead(keys)
	f.batchIDs.reset(len(rows))
	for i := range rows {
		r := &rows[i]
		ahead.At(i)
		f.batchIDs.touch(keys, i)
		s, met := f.batchIDs.find(keys[i])
		if met {
			f.repeat[i], f.later[s.v] = true, true
			f.maybeStored[i] = true // as its first may be
			continue
		}
		f.batchIDs.put(s, keys[i], uint32(i))
		if from, to, ok := f.ids.Find(keys[i]); ok {
			f.maybeStored[i] = true
			if fp, ok := f.recent.get(keys[i]); ok {
				stored[r.ID] = fp
				c.IDRecalled++
			} else {
				refs = append(refs, Ref{ID: r.ID, From: from, To: to})
				c.IDConfirms++
			}
		} else if r.Time.Before(floor) && !f.ids.Vouches(r.Time) {
			f.maybeStored[i] = true
			refs = append(refs, Ref{ID: r.ID, From: r.Time, To: r.Time})
			c.IDLookups++
		}
	}
	if len(refs) > 0 {
		if err := f.store.Events(ctx, refs, func(id string, fp uint64) { stored[id] = fp }); err != nil {
			return nil, nil, nil, c, err
		}
	}

	// The responses of the rows that the ids let through. Their keys are kept for the
	// decisions below; a zero key is a row's without a response id.
	f.rkeys = slices.Grow(f.rkeys[:0], len(rows))[:len(rows)]
	rkeys := f.rkeys
	for i := range rows {
		if r := &rows[i]; r.ResponseID != "" {
			rkeys[i] = keyset.ResponseKeyOf(r.Provider, r.ResponseID)
		} else {
			rkeys[i] = keyset.Key{}
		}
	}
	ahead = f.resp.Ahead(rkeys)
	refs = refs[:0]
	horizon := f.resp.Floor().Add(ResponseSkew)
	f.batchResps.reset(len(rows))
	for i := range rows {
		r := &rows[i]
		if r.ResponseID == "" {
			continue
		}
		if f.maybeStored[i] {
			if _, ok := stored[r.ID]; ok {
				continue
			}
		}
		// Here batchResps holds, of each response, 2 × the last row with it, + 1 once a
		// row with it was let through by the ids (and so looked up, if need be).
		rk := rkeys[i]
		f.batchResps.touch(rkeys, i)
		s, met := f.batchResps.find(rk)
		v := int(s.v)
		if met {
			f.respRepeat[i], f.respLater[v/2] = true, true
		}
		looked := met && v%2 == 1
		if f.repeat[i] || looked {
			f.batchResps.put(s, rk, uint32(2*i+v%2))
			continue
		}
		f.batchResps.put(s, rk, uint32(2*i+1))
		ahead.At(i)
		if from, to, ok := f.resp.Find(rk); ok {
			refs = append(refs, Ref{ID: r.ResponseID, From: from, To: to})
			c.ResponseConfirms++
		} else if r.Time.Before(horizon) && !(f.resp.Vouches(r.Time.Add(-ResponseSkew)) && f.resp.Vouches(r.Time.Add(ResponseSkew))) {
			refs = append(refs, Ref{ID: r.ResponseID, From: r.Time.Add(-ResponseSkew), To: r.Time.Add(ResponseSkew)})
			c.ResponseLookups++
		}
	}
	// The stored report that counts for each response: the one no other displaced. A response
	// whose every report was displaced (a crash between a displacement and the INSERT of the
	// report that displaced it) has none, and its report in the batch is fresh.
	storedResp := make(map[keyset.Key]batch.Row)
	if len(refs) > 0 {
		err := f.store.Responses(ctx, refs, func(r batch.Row, displaced bool) {
			if !displaced {
				storedResp[keyset.ResponseKeyOf(r.Provider, r.ResponseID)] = r
			}
		})
		if err != nil {
			return nil, nil, nil, c, err
		}
	}

	clear(f.seen)
	clear(f.seenResp)
	var conflicts []Conflict
	var decisions []Decision
	fresh := rows[:0]
	f.written = f.written[:0]
	for i := range rows {
		r := &rows[i]
		fp := Fingerprint(r)
		var kept uint64
		ok := false
		if f.repeat[i] {
			kept, ok = f.seen[keys[i]]
		}
		if !ok && f.maybeStored[i] {
			kept, ok = stored[r.ID]
		}
		if ok {
			if kept != fp {
				conflicts = append(conflicts, Conflict{Row: *r, Stored: kept, Got: fp})
			} else {
				c.Duplicates++
			}
			continue
		}
		rk := rkeys[i]
		if r.ResponseID != "" {
			j, taken := 0, false
			if f.respRepeat[i] {
				j, taken = f.seenResp[rk]
			}
			if taken {
				// Another report of the call is earlier in the batch: the better one stays
				// in its place. Neither is in seen's way: a later copy of the dropped id is
				// dropped the same way, rather than compared with a copy never written.
				if k := &fresh[j]; r.Outranks(k) {
					decisions = append(decisions, Decision{Kept: *r, Dropped: *k})
					delete(f.seen, f.written[j].key)
					if f.later[i] {
						f.seen[keys[i]] = fp
					}
					*k = *r
					f.written[j] = written{id: r.ID, key: keys[i], rk: rk, fp: fp}
				} else if differ(r, k) {
					decisions = append(decisions, Decision{Kept: *k, Dropped: *r})
				}
				c.ResponseDuplicates++
				continue
			}
			if s, ok := storedResp[rk]; ok {
				if !r.Outranks(&s) {
					if differ(r, &s) {
						decisions = append(decisions, Decision{Kept: s, Dropped: *r})
					}
					c.ResponseDuplicates++
					continue
				}
				decisions = append(decisions, Decision{Kept: *r, Dropped: s, Displaced: true})
				c.Displaced++
			}
			if f.respLater[i] {
				f.seenResp[rk] = len(fresh)
			}
		}
		if f.later[i] {
			f.seen[keys[i]] = fp
		}
		f.written = append(f.written, written{id: r.ID, key: keys[i], rk: rk, fp: fp})
		if len(fresh) == i {
			fresh = fresh[:i+1] // in place: no copy while no row was dropped before it
		} else {
			fresh = append(fresh, *r)
		}
	}
	return fresh, conflicts, decisions, c, nil
}

// Landed returns the rows ClickHouse does not hold, for after an INSERT of unknown outcome
// (which may have landed in part), once it no longer runs: each row is looked up at its own
// time. A stored copy with other content is returned as a Conflict. The rows found stored are
// remembered at once: the caller's Remember covers only what it inserts next, and a later
// copy of a landed row must find it in the sets. (TestFilterExactlyOnce found this missing.)
func (f *Filter) Landed(ctx context.Context, rows []batch.Row) ([]batch.Row, []Conflict, Counts, error) {
	c := Counts{IDLookups: len(rows)}
	if len(rows) == 0 {
		return rows, nil, c, nil
	}
	refs := make([]Ref, len(rows))
	for i := range rows {
		refs[i] = Ref{ID: rows[i].ID, From: rows[i].Time, To: rows[i].Time}
	}
	stored := make(map[string]uint64)
	if err := f.store.Events(ctx, refs, func(id string, fp uint64) { stored[id] = fp }); err != nil {
		return nil, nil, c, err
	}
	var conflicts []Conflict
	kept := rows[:0]
	keptKeys := f.written[:0]
	for i := range rows {
		r := &rows[i]
		w := f.writtenAt(i, r)
		fp, ok := stored[r.ID]
		if ok {
			f.recent.add(w.key, fp)
			f.load(w.key, w.rk, r.ResponseID != "", r.Received, r.Time)
		}
		switch {
		case !ok:
			kept = append(kept, *r)
			keptKeys = append(keptKeys, w)
		case fp != w.fp:
			conflicts = append(conflicts, Conflict{Row: *r, Stored: fp, Got: w.fp})
		default:
			c.Duplicates++
		}
	}
	f.written = keptKeys
	return kept, conflicts, c, nil
}

// KeptFrom is the time from which the sets keep an event: the later of when it was received
// and its own time. A copy sent again carries the same time, however late it comes, so a copy
// timed at or after the floor finds its first copy in the sets (kept from no earlier than that
// time), and one timed before the floor is looked up in ClickHouse near that time. The sets'
// window therefore bounds only memory, not how late a re-sent copy is still caught.
func KeptFrom(received, eventTime time.Time) time.Time {
	if eventTime.After(received) {
		return eventTime
	}
	return received
}
