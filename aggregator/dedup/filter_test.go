package dedup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/stage/keyset"
)

// table stands for the partition's rows in usage_events: the edge a Filter looks up. It
// answers as ClickHouse does, by id (or response id) within each ref's span of event time.
type table struct {
	rows      []batch.Row
	displaced map[string]bool // ids of reports another displaced (the worker's correction rows)
	events    int             // refs asked for
	answers   int
}

func (t *table) within(r *batch.Row, ref Ref) bool {
	s := r.Time.Unix()
	return s >= ref.From.Unix() && s <= ref.To.Unix()
}

func (t *table) Events(_ context.Context, refs []Ref, fn func(id string, fp uint64)) error {
	t.events += len(refs)
	for i := range t.rows {
		for _, ref := range refs {
			if t.rows[i].ID == ref.ID && t.within(&t.rows[i], ref) {
				fn(t.rows[i].ID, Fingerprint(&t.rows[i]))
				t.answers++
				break
			}
		}
	}
	return nil
}

func (t *table) Responses(_ context.Context, refs []Ref, fn func(stored batch.Row, displaced bool)) error {
	for i := range t.rows {
		for _, ref := range refs {
			if t.rows[i].ResponseID != "" && t.rows[i].ResponseID == ref.ID && t.within(&t.rows[i], ref) {
				fn(t.rows[i], t.displaced[t.rows[i].ID])
				break
			}
		}
	}
	return nil
}

func (t *table) ids() string {
	var ids []string
	for _, r := range t.rows {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

var now0 = time.Date(2026, 11, 26, 10, 30, 0, 0, time.UTC)

func usage(id string, at time.Time, input int64) batch.Row {
	return batch.Row{ID: id, Time: at, Received: at, Provider: "openai", Model: "gpt-4o", Team: "search",
		Tokens: event.Tokens{Input: input, Output: 1}}
}

// fresh filters rows and checks what is kept, what conflicts and what is counted.
func fresh(t *testing.T, f *Filter, rows []batch.Row, kept, conflicts string, want Counts) []batch.Row {
	t.Helper()
	got, cs, _, c, err := f.Fresh(context.Background(), slices.Clone(rows))
	if err != nil {
		t.Fatal(err)
	}
	var ids, cids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	for _, x := range cs {
		cids = append(cids, fmt.Sprintf("%s:%016x/%016x", x.Row.ID, x.Stored, x.Got))
	}
	if strings.Join(ids, ",") != kept {
		t.Errorf("kept %q, want %q", strings.Join(ids, ","), kept)
	}
	if strings.Join(cids, ",") != conflicts {
		t.Errorf("conflicts %q, want %q", strings.Join(cids, ","), conflicts)
	}
	if c != want {
		t.Errorf("counts %+v, want %+v", c, want)
	}
	return got
}

// The cycle filter → insert → remember: a copy of a written id is dropped — recalled among
// the last ids written, or after a lookup that confirms it — and told from a conflict whatever
// the copy's time, within one batch as across batches; an id the set holds but ClickHouse
// does not — a false positive, or a set ahead of ClickHouse — is written.
func TestFilterConfirmsWhatTheSetFinds(t *testing.T) {
	db := &table{}
	f := NewFilter(time.Hour, func() time.Time { return now0 }, db)
	a, b := usage("a", now0, 10), usage("b", now0, 20)
	bOther := usage("b", now0.Add(-20*time.Minute), 21) // same id, other time and content

	db.rows = append(db.rows, fresh(t, f, []batch.Row{a, b, a, bOther}, "a,b",
		fmt.Sprintf("b:%016x/%016x", Fingerprint(&b), Fingerprint(&bOther)), Counts{Duplicates: 1})...)
	f.Remember(db.rows)

	fresh(t, f, []batch.Row{a, bOther, usage("c", now0, 30)}, "c",
		fmt.Sprintf("b:%016x/%016x", Fingerprint(&b), Fingerprint(&bOther)), Counts{Duplicates: 1, IDRecalled: 2})

	// The set says "ghost" was written; ClickHouse does not hold it.
	ghost := usage("ghost", now0, 40)
	f.Load(ghost.ID, "", "", now0, now0)
	fresh(t, f, []batch.Row{ghost}, "ghost", "", Counts{IDConfirms: 1})
	if db.events != 1 {
		t.Errorf("looked up %d refs, want 1 (ghost's)", db.events)
	}

	// Once recentSize later ids were written, a and b are no longer recalled: their copies
	// are confirmed in ClickHouse, with the same outcome.
	var later []batch.Row
	for i := range recentSize {
		later = append(later, usage(fmt.Sprintf("later-%d", i), now0, 1))
	}
	db.rows = append(db.rows, later...)
	f.Remember(later)
	fresh(t, f, []batch.Row{a, bOther}, "",
		fmt.Sprintf("b:%016x/%016x", Fingerprint(&b), Fingerprint(&bOther)), Counts{Duplicates: 1, IDConfirms: 2})
	if db.events != 3 {
		t.Errorf("looked up %d refs, want 3", db.events)
	}
}

// recent forgets what the ring or its index overwrote, and never answers for another key.
func TestRecent(t *testing.T) {
	r := newRecent()
	k := func(i int) keyset.Key { return keyset.KeyOf(fmt.Sprintf("evt_%d", i)) }
	for i := range recentSize {
		r.add(k(i), uint64(i))
	}
	found := 0
	for i := range recentSize {
		if fp, ok := r.get(k(i)); ok {
			if fp != uint64(i) {
				t.Fatalf("get(evt_%d) = %d, want %d", i, fp, i)
			}
			found++
		}
	}
	// A direct-mapped index of twice the ring loses an entry to a later one in about
	// 1 - (1 - e^-0.5)/0.5 = 21 % of cases; for these keys, 13,948 of 65,536.
	if found != 51_588 {
		t.Errorf("recalled %d of %d, want 51,588 (the rest lost to index collisions)", found, recentSize)
	}
	if _, ok := r.get(k(-1)); ok {
		t.Error("get of a key never added = true")
	}
	r.add(k(recentSize), 7) // overwrites evt_0's ring entry
	if _, ok := r.get(k(0)); ok {
		t.Error("evt_0 recalled after the ring overwrote it")
	}
	if fp, ok := r.get(k(recentSize)); !ok || fp != 7 {
		t.Errorf("get of the newest = %d, %v; want 7, true", fp, ok)
	}
}

// Rows timed before the window are looked up near their own time where the set cannot vouch
// for their hour, and not at all where it can.
func TestFilterLooksUpOldEventsInHoursNotVouchedFor(t *testing.T) {
	long := now0.Add(-100 * time.Hour)
	db := &table{rows: []batch.Row{usage("old", long, 1)}}
	f := NewFilter(time.Hour, func() time.Time { return now0 }, db)
	f.Uncover(long) // ClickHouse holds old events of that hour
	fresh(t, f, []batch.Row{usage("old", long, 1), usage("new", long, 2), usage("backfill", long.Add(5*time.Hour), 3)},
		"new,backfill", "", Counts{Duplicates: 1, IDLookups: 2})
}

// A second report of one provider response under another id is dropped, whether the first is
// in the batch, in the set (confirmed), or only in ClickHouse outside the window (looked up
// within ResponseSkew of its time); a response the set holds but ClickHouse does not is kept.
func TestFilterResponses(t *testing.T) {
	report := func(id, rid string, at time.Time) batch.Row {
		r := usage(id, at, 5)
		r.ResponseID = rid
		return r
	}
	long := now0.Add(-100 * time.Hour)
	db := &table{rows: []batch.Row{report("sdk-old", "resp-old", long)}}
	f := NewFilter(time.Hour, func() time.Time { return now0 }, db)
	f.Uncover(long)
	db.rows = append(db.rows, fresh(t, f, []batch.Row{
		report("proxy-1", "resp-1", now0), report("sdk-1", "resp-1", now0.Add(time.Second)),
		report("proxy-old", "RESP-OLD", long.Add(2*time.Minute)), // another response id (case counts)
		report("sdk-old-2", "resp-old", long.Add(4*time.Minute)),
	}, "proxy-1,proxy-old", "", Counts{ResponseDuplicates: 2, IDLookups: 2, ResponseLookups: 2})...)
	f.Remember(db.rows)

	ghost := report("x", "resp-ghost", now0)
	f.Load("y", "openai", "resp-ghost", now0, now0) // in the set, not in ClickHouse
	fresh(t, f, []batch.Row{report("sdk-1b", "resp-1", now0.Add(3*time.Second)), ghost}, "x", "",
		Counts{ResponseDuplicates: 1, ResponseConfirms: 2})
}

// A report dropped as a conflict holds no place for its response: the next report of that
// call is kept, and a third is a duplicate of the second.
func TestFilterResponseAfterAConflict(t *testing.T) {
	report := func(id, rid string, input int64) batch.Row {
		r := usage(id, now0, input)
		r.ResponseID = rid
		return r
	}
	a, conflict := report("a", "resp-0", 5), report("a", "resp-1", 6) // the id again, other content
	f := NewFilter(time.Hour, func() time.Time { return now0 }, &table{})
	fresh(t, f, []batch.Row{a, conflict, report("b", "resp-1", 5), report("c", "resp-1", 5)}, "a,b",
		fmt.Sprintf("a:%016x/%016x", Fingerprint(&a), Fingerprint(&conflict)), Counts{ResponseDuplicates: 1})
}

// Of two reports of one call the better stands, whichever came first: a stored anonymous one
// is displaced by the proxy's, a later anonymous one never displaces the proxy's, and within
// a batch the better takes the earlier one's place. Every choice between reports that differ
// is returned to be recorded.
func TestFilterRanks(t *testing.T) {
	report := func(id, rid, source string, input, cached int64) batch.Row {
		r := usage(id, now0, input)
		r.ResponseID, r.Source, r.Tokens.CachedInput = rid, source, cached
		return r
	}
	anon := report("forged", "resp-1", "", 1, 0)
	anon.Team = "payments"
	db := &table{rows: []batch.Row{anon}, displaced: map[string]bool{}}
	f := NewFilter(time.Hour, func() time.Time { return now0 }, db)
	f.Remember(db.rows)
	decide := func(rows []batch.Row, kept string, want Counts, decisions ...string) []Decision {
		t.Helper()
		got, _, ds, c, err := f.Fresh(context.Background(), slices.Clone(rows))
		if err != nil {
			t.Fatal(err)
		}
		var ids, dids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		for _, d := range ds {
			dids = append(dids, fmt.Sprintf("%s>%s/%v", d.Kept.ID, d.Dropped.ID, d.Displaced))
		}
		if strings.Join(ids, ",") != kept || c != want || strings.Join(dids, ",") != strings.Join(decisions, ",") {
			t.Errorf("kept %v, counts %+v, decisions %v; want %s, %+v, %v", ids, c, dids, kept, want, decisions)
		}
		db.rows = append(db.rows, got...)
		f.Remember(got)
		return ds
	}

	// The proxy's report of a call an anonymous client reported first displaces it.
	proxy := report("proxy-openai-resp-1", "resp-1", batch.SourceProxy, 1000, 800)
	ds := decide([]batch.Row{proxy}, "proxy-openai-resp-1", Counts{Displaced: 1, ResponseConfirms: 1}, "proxy-openai-resp-1>forged/true")
	if d := ds[0].Dropped; d.Team != "payments" || d.Tokens.Input != 1 {
		t.Errorf("the displaced report = %+v, want the stored one as stored", d)
	}
	db.displaced["forged"] = true
	// A later anonymous report does not displace the proxy's, however detailed; it differs,
	// so the choice is returned. An identical report of the call is only counted.
	late := report("sdk-1", "resp-1", "", 1000, 800)
	late.Tokens.Reasoning = 1
	same := proxy
	same.ID, same.Source = "sdk-2", batch.SourceKey+"search"
	decide([]batch.Row{late, same}, "", Counts{ResponseDuplicates: 2, ResponseConfirms: 1}, "proxy-openai-resp-1>sdk-1/false")

	// Within a batch: the key's report takes the anonymous one's place, and then a more
	// detailed report of the same rank takes the key's.
	a, k, k2 := report("a", "resp-2", "", 10, 0), report("k", "resp-2", batch.SourceKey+"x", 10, 0), report("k2", "resp-2", batch.SourceEmitter+"svc", 10, 5)
	decide([]batch.Row{a, k, k2}, "k2", Counts{ResponseDuplicates: 2}, "k>a/false", "k2>k/false")

	// A crash after the displacement, before the INSERT of the report that displaced: with
	// every stored report displaced, the report is written when it comes again.
	db.rows = append(db.rows, report("anon-3", "resp-3", "", 5, 0))
	f.Remember(db.rows[len(db.rows)-1:])
	db.displaced["anon-3"] = true
	decide([]batch.Row{report("proxy-3", "resp-3", batch.SourceProxy, 5, 0)}, "proxy-3", Counts{ResponseConfirms: 1})
}

// After an INSERT of unknown outcome, Landed keeps only the rows ClickHouse does not hold.
func TestFilterLanded(t *testing.T) {
	a, b := usage("a", now0, 1), usage("b", now0, 2)
	db := &table{rows: []batch.Row{a}}
	f := NewFilter(time.Hour, func() time.Time { return now0 }, db)
	got, cs, c, err := f.Landed(context.Background(), []batch.Row{a, b})
	if err != nil || len(got) != 1 || got[0].ID != "b" || len(cs) != 0 || c != (Counts{Duplicates: 1, IDLookups: 2}) {
		t.Fatalf("Landed = %v, %v, %+v, %v; want b alone, one duplicate, two lookups", got, cs, c, err)
	}
}

// The exactly-once argument, run: batches of new events and of copies (redeliveries, client
// re-sends, some timed long ago, copies with other content, second reports of a call under
// another id) go through the cycle, with INSERTs that land in part and
// writers that die between the INSERT and Remember (a new filter is then loaded from
// ClickHouse, as at start-up); ClickHouse ends up holding every id exactly once.
func TestFilterExactlyOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	now := now0
	clock := func() time.Time { return now }
	db := &table{displaced: map[string]bool{}}
	load := func() *Filter {
		f := NewFilter(time.Hour, clock, db)
		// Bounded far below what the run writes: buckets leave before the window ends, and
		// copies of their events must be found in ClickHouse instead.
		f.SetMaxKeys(200, 5*time.Minute)
		for _, r := range db.rows {
			if !r.Received.Before(f.Floor()) || !r.Time.Before(f.Floor()) {
				f.Load(r.ID, r.Provider, r.ResponseID, r.Received, r.Time)
			} else {
				f.Uncover(r.Time)
			}
		}
		return f
	}
	f := load()
	var sent, everything []batch.Row
	want := map[string]bool{}
	for round := range 300 {
		now = now.Add(37 * time.Second)
		var b []batch.Row
		for range 1 + rng.IntN(20) {
			if len(sent) > 0 {
				switch c := sent[rng.IntN(len(sent))]; rng.IntN(9) {
				case 0, 1, 2: // a copy, however old
					b = append(b, c)
					continue
				case 3: // a copy with other content: a conflict
					c.Tokens.Output++
					b = append(b, c)
					continue
				case 4: // the same call reported by another emitter, under another id
					c.ID = fmt.Sprintf("other-%d-%d", round, len(b))
					b = append(b, c)
					continue
				case 5: // ... by a source of another rank, which may say more
					c.ID = fmt.Sprintf("ranked-%d-%d", round, len(b))
					c.Source = []string{"", batch.SourceKey + "k", batch.SourceProxy}[rng.IntN(3)]
					if rng.IntN(2) == 0 {
						c.Tokens.CachedInput = c.Tokens.Input / 2
					}
					b = append(b, c)
					continue
				}
			}
			at := now
			if rng.IntN(5) == 0 {
				at = now.Add(-time.Duration(rng.IntN(200)) * time.Hour) // history
			}
			r := usage(fmt.Sprintf("evt-%d-%d", round, len(b)), at, int64(rng.IntN(1000)))
			r.Received = now
			r.ResponseID = "resp-" + r.ID
			sent = append(sent, r)
			want[r.ID] = true
			b = append(b, r)
		}
		everything = append(everything, b...)
		rows, _, ds, _, err := f.Fresh(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds { // the worker takes a displaced report out before the INSERT
			if d.Displaced {
				db.displaced[d.Dropped.ID] = true
			}
		}
		switch rng.IntN(6) {
		case 0: // the INSERT lands in part, its outcome unknown; the retry completes it
			n := rng.IntN(len(rows) + 1)
			db.rows = append(db.rows, rows[:n]...)
			if rows, _, _, err = f.Landed(context.Background(), rows); err != nil {
				t.Fatal(err)
			}
			db.rows = append(db.rows, rows...)
			f.Remember(rows)
		case 1: // the writer dies after the INSERT, before Remember and the ack
			db.rows = append(db.rows, rows...)
			f = load()
		default:
			db.rows = append(db.rows, rows...)
			f.Remember(rows)
		}
		f.Expire()
		if ids, responses := f.Len(); round > 150 && (ids > 200 || responses > 200) {
			t.Fatalf("round %d: the sets hold %d ids and %d responses, bounded to 200", round, ids, responses)
		}
	}
	if len(db.rows) < 1000 {
		t.Fatalf("%d rows written: too few for the bound of 200 to shorten the window", len(db.rows))
	}
	// Every call counts once: its best report stands, each other one stored was displaced.
	count, calls := map[string]int{}, map[string]int{}
	best := map[string]batch.Row{}
	for _, r := range everything {
		if b, ok := best[r.ResponseID]; !ok || r.Outranks(&b) {
			best[r.ResponseID] = r
		}
	}
	for _, r := range db.rows {
		count[r.ID]++
		if db.displaced[r.ID] {
			continue
		}
		calls[r.ResponseID]++
		if b := best[r.ResponseID]; r.Rank() != b.Rank() || r.Detail() != b.Detail() {
			t.Errorf("%s counts for %s with rank %d detail %d; the best report has %d, %d", r.ID, r.ResponseID, r.Rank(), r.Detail(), b.Rank(), b.Detail())
		}
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}
	for rid, n := range calls {
		if n != 1 {
			t.Errorf("response %s stored %d times", rid, n)
		}
	}
	if len(calls) != len(want) {
		t.Errorf("%d calls counted, want %d", len(calls), len(want))
	}
}

// BenchmarkFresh filters a batch of 64,000 new rows, each with a provider response, as the
// aggregator does before every INSERT (not remembering them, so that every round's are new).
func BenchmarkFresh(b *testing.B) {
	now := time.Now().UTC()
	rows := make([]batch.Row, 64_000)
	for i := range rows {
		rows[i] = usage(fmt.Sprintf("evt_%07d", i), now, int64(i))
		rows[i].Provider, rows[i].ResponseID = "openai", fmt.Sprintf("chatcmpl-%07d", i)
	}
	f := NewFilter(time.Hour, time.Now, &table{})
	batchRows := make([]batch.Row, len(rows))
	b.ReportAllocs()
	for b.Loop() {
		copy(batchRows, rows)
		kept, _, _, _, err := f.Fresh(context.Background(), batchRows)
		if err != nil || len(kept) != len(rows) {
			b.Fatalf("Fresh kept %d of %d: %v", len(kept), len(rows), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

// BenchmarkRemember is the writer's cycle after its INSERT: Remember of the 64,000 rows Fresh
// let through, new ids every round.
func BenchmarkRemember(b *testing.B) {
	now := time.Now().UTC()
	f := NewFilter(time.Hour, time.Now, &table{})
	rows := make([]batch.Row, 64_000)
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := range rows {
			rows[i] = usage(fmt.Sprintf("evt_%03d_%07d", round, i), now, int64(i))
			rows[i].Provider, rows[i].ResponseID = "openai", fmt.Sprintf("chatcmpl-%03d-%07d", round, i)
		}
		round++
		kept, _, _, _, err := f.Fresh(context.Background(), rows)
		if err != nil || len(kept) != len(rows) {
			b.Fatalf("Fresh kept %d of %d: %v", len(kept), len(rows), err)
		}
		b.StartTimer()
		f.Remember(kept)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rows)), "ns/row")
}

// Remember records what Fresh computed for the rows it returned — also after Landed kept
// part of them, and for a report that replaced an earlier one of its call in the batch — and
// hashes any other row itself: a later batch of copies under the same ids, and of reports of
// the same calls under other ids, is dropped from the sets alone, without a lookup.
func TestRememberKeys(t *testing.T) {
	report := func(id, resp, source string, input int64) batch.Row {
		r := usage(id, now0, input)
		r.ResponseID, r.Source = resp, source
		return r
	}
	for _, tc := range []struct {
		name   string
		landed bool // an INSERT of unknown outcome: Landed, with c already stored, in between
		other  bool // Remember is given rows Fresh did not return
	}{{"fresh", false, false}, {"landed", true, false}, {"other rows", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			db := &table{}
			f := NewFilter(time.Hour, func() time.Time { return now0 }, db)
			// b2 outranks b (an authenticated source) and takes its place in the batch.
			rows := []batch.Row{report("a", "r-a", "", 1), report("b", "r-b", "", 2),
				report("b2", "r-b", batch.SourceKey+"k", 2), report("c", "r-c", "", 3), usage("d", now0, 4)}
			kept, _, _, _, err := f.Fresh(context.Background(), rows)
			if err != nil || len(kept) != 4 || kept[1].ID != "b2" {
				t.Fatalf("Fresh kept %v (%v), want a, b2, c, d", kept, err)
			}
			if tc.landed {
				db.rows = append(db.rows, kept[2])
				if kept, _, _, err = f.Landed(context.Background(), kept); err != nil || len(kept) != 3 {
					t.Fatalf("Landed kept %v (%v), want a, b2, d", kept, err)
				}
			}
			if tc.other {
				kept = slices.Clone(kept)
				kept[0].ID, kept[0].ResponseID = "a-other", "r-a-other"
			}
			db.rows = append(db.rows, kept...)
			f.Remember(kept)
			lookups := db.events
			var again []batch.Row
			for _, r := range kept {
				again = append(again, r, report(r.ID+"-copy", r.ResponseID, "", r.Tokens.Input))
			}
			got, cs, _, c, err := f.Fresh(context.Background(), again)
			var want []string
			for _, r := range kept {
				if r.ResponseID == "" {
					want = append(want, r.ID+"-copy") // a new event: no call ties it to d
				}
			}
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID)
			}
			if err != nil || !slices.Equal(ids, want) || len(cs) != 0 || db.events != lookups ||
				c.Duplicates != len(kept) || c.IDRecalled != len(kept) {
				t.Fatalf("Fresh of copies kept %v (%v), conflicts %v, counts %+v, %d ids looked up; want %v, every copy recalled, no lookup",
					ids, err, cs, c, db.events-lookups, want)
			}
		})
	}
}
