package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/aggregator/dedup"
	"github.com/tokenmeter/tokenmeter/aggregator/lease"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/keyset"
	"github.com/tokenmeter/tokenmeter/stage/pull"
)

const (
	// insertTimeout bounds one INSERT. An insert in flight at shutdown runs to completion
	// within it.
	insertTimeout = time.Minute
	// ackTimeout bounds one DoubleAck or dead-letter publish.
	ackTimeout = 5 * time.Second
)

// errStopped ends a batch that shutdown interrupted before its rows were written.
var errStopped = errors.New("stopped before the batch was written")

// errLeaseLapsed ends a batch whose partition lease lapsed before its rows were written: the
// worker takes the lease again and rebuilds its sets, since another writer may have written
// the partition meanwhile, and leaves the batch to redelivery.
var errLeaseLapsed = errors.New("the partition's lease lapsed before the batch was written")

// pending is a batch: decoded rows and the messages they came from, to ack once the rows are
// in ClickHouse, and the conflicts found while filtering it, to dead-letter before the ack.
type pending struct {
	msgs []jetstream.Msg
	rows []batch.Row
	// written is how many rows of the array from its start decoding may have written: take
	// filters in place, so rows past len hold events too, and recycle clears up to here.
	written   int
	conflicts []dedup.Conflict
}

// worker is the single writer of one partition.
type worker struct {
	a     *Aggregator
	p     int
	log   *slog.Logger
	store store
	// dedup decides which rows are new: the ids and provider responses written within the
	// window, confirmed in ClickHouse (lookups).
	dedup *dedup.Filter
	cons  jetstream.Consumer
	lease *lease.Lease
	// sh is where the partition is written; rep the replica of sh in use, through which
	// store reads and inserts writes (bind).
	sh      *shard
	rep     *replica
	inserts *chwrite.Group
	// free holds row arrays of written batches for fetch to fill again (recycle).
	free chan []batch.Row
}

// bind points the worker's store and inserts at the replica its shard uses now.
func (wk *worker) bind() {
	wk.rep, wk.store = wk.sh.current()
	wk.inserts = wk.rep.inserts
}

// failed tells the shard that a call through the worker's replica failed, so that it can move
// to another replica when this one is down.
func (wk *worker) failed(ctx context.Context) {
	moved, err := wk.sh.failed(ctx, wk.rep)
	switch {
	case moved:
		wk.log.Warn("ClickHouse replica does not answer; the shard moved to another replica", "shard", wk.sh.n, "from", wk.rep.addr)
	case err != nil:
		wk.log.Warn("ClickHouse replica does not answer", "err", err)
	}
	wk.bind()
}

// retry is Aggregator.retry through the worker's shard: each attempt runs on the replica in
// use, and a failed one lets the shard move to another replica.
func (wk *worker) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	return wk.a.retry(ctx, wk.sh.breaker, what, func(ctx context.Context) error {
		wk.bind()
		err := fn(ctx)
		if err != nil && ctx.Err() == nil {
			wk.failed(ctx)
		}
		return err
	}, &wk.p)
}

// lookups is a worker's dedup.Store: its partition's lookups in ClickHouse, retried through
// the breaker until they succeed or ctx ends.
type lookups struct{ wk *worker }

func (l lookups) Events(ctx context.Context, refs []dedup.Ref, fn func(id string, fp uint64)) error {
	wk := l.wk
	return wk.retry(ctx, "look up event ids in ClickHouse", func(ctx context.Context) error {
		return wk.store.existing(ctx, wk.p, refs, fn)
	})
}

func (l lookups) Responses(ctx context.Context, refs []dedup.Ref, fn func(stored batch.Row, displaced bool)) error {
	wk := l.wk
	return wk.retry(ctx, "look up response ids in ClickHouse", func(ctx context.Context) error {
		return wk.store.existingResponses(ctx, wk.p, refs, fn)
	})
}

func (a *Aggregator) runPartition(ctx context.Context, sh *shard, l *lease.Lease, p int) error {
	wk := &worker{a: a, p: p, sh: sh, log: a.log.With("partition", p), lease: l}
	wk.bind()
	wk.dedup = wk.newFilter()
	// The lease is renewed until the worker is done, including an INSERT finishing after
	// ctx ended, and released then.
	renewCtx, stopRenewing := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stopRenewing()
		l.Release()
	}()
	go l.RenewEvery(renewCtx, func(err error) {
		wk.log.Error("another aggregator took this partition's lease; writing stops until it is back", "err", err)
		a.setReady(p, err)
	}, func(err error) {
		wk.log.Warn("renewing the partition's lease failed", "err", err)
	})
	if err := wk.takeLease(ctx, false); err != nil {
		return nil // ctx is done
	}
	if err := wk.warm(ctx); err != nil {
		return nil // ctx is done
	}
	cons, err := a.consumer(ctx, p)
	if err != nil {
		return nil
	}
	wk.cons = cons
	a.setReady(p, nil)

	// Fetching and decoding the next batch overlaps with inserting this one; the channel
	// holds one batch, so at most three are in memory.
	batches := make(chan *pending, 1)
	wk.free = make(chan []batch.Row, 1)
	go wk.fetch(ctx, batches)
	for b := range batches {
		if ctx.Err() != nil {
			wk.nak(b)
			continue
		}
		err := wk.flush(ctx, b)
		if err == nil {
			wk.recycle(b)
		}
		if err != nil {
			wk.nak(b)
			if errors.Is(err, errStopped) {
				continue
			}
			if errors.Is(err, errLeaseLapsed) {
				if wk.takeLease(ctx, true) != nil || wk.warm(ctx) != nil {
					continue // ctx is done
				}
				a.setReady(wk.p, nil)
				continue
			}
			// Leave the rest to redelivery; draining lets the fetcher finish.
			go func() {
				for b := range batches {
					wk.nak(b)
				}
			}()
			return err
		}
	}
	return nil
}

// takeLease waits until the worker holds its partition's lease, reporting the partition not
// ready meanwhile. When it had to wait, or lapsed says the worker held the lease before, the
// writer before it — another aggregator, or this worker — may have left an INSERT of the
// partition running in ClickHouse, so it then also waits for those to finish before the sets
// are loaded. It returns ctx's error when ctx ends first.
func (wk *worker) takeLease(ctx context.Context, lapsed bool) error {
	var last string
	waited := lapsed
	err := wk.lease.Acquire(ctx, func(err error) {
		waited = true
		wk.a.setReady(wk.p, err)
		if err.Error() != last {
			wk.log.Warn("waiting for the partition's lease", "err", err)
			last = err.Error()
		}
	})
	if err != nil || !waited {
		return err
	}
	return wk.a.awaitNoInsertsOf(ctx, wk.store, func(p int) bool { return p == wk.p },
		"waiting for INSERTs of the partition's previous writer to finish before loading the de-duplication sets")
}

// newFilter is an empty de-duplication filter of the partition, bounded by -dedup-max-bytes.
func (wk *worker) newFilter() *dedup.Filter {
	f := dedup.NewFilter(wk.a.cfg.DedupWindow, wk.a.now, lookups{wk})
	if wk.a.cfg.DedupMaxBytes > 0 {
		// Each owned partition has two sets (ids, responses) of at most BytesPerKey a key.
		f.SetMaxKeys(int(wk.a.cfg.DedupMaxBytes/keyset.BytesPerKey/2/int64(max(len(wk.a.cfg.Owned), 1))), MinDedupWindow)
	}
	return f
}

// warm loads the ids and provider responses ClickHouse holds for the partition within the
// window, then repairs the roll-ups of the minutes those events are timed in: the previous
// writer may have died in the middle of an INSERT.
func (wk *worker) warm(ctx context.Context) error {
	start := time.Now()
	var recent affected
	err := wk.retry(ctx, "load the de-duplication set", func(ctx context.Context) error {
		wk.dedup = wk.newFilter()
		recent = affected{}
		floor := wk.dedup.Floor()
		err := wk.store.ids(ctx, wk.p, floor, func(e *stored) {
			recent.add(e.time)
			wk.dedup.Load(e.id, e.provider, e.responseID, e.ingested, e.time)
		})
		if err != nil {
			return err
		}
		return wk.store.oldHours(ctx, wk.p, floor, wk.dedup.Uncover)
	})
	if err != nil {
		return err
	}
	wk.dedup.Expire() // what the window held past -dedup-max-bytes leaves (and is looked up)
	wk.setGauges()
	ids, responses := wk.dedup.Len()
	wk.log.Info("loaded the de-duplication set", "ids", ids, "responses", responses, "since", wk.dedup.Floor(), "took", time.Since(start))
	return wk.repair(ctx, recent, "at start-up")
}

// repair makes the partition's roll-ups agree with usage_events over the minutes in a (see
// store.repairRollups). The caller makes sure no INSERT of the partition runs; a repair that
// failed is waited for before it is tried again. It returns ctx's error when ctx ends first.
func (wk *worker) repair(ctx context.Context, a affected, why string) error {
	if len(a) == 0 {
		return nil
	}
	attempt := 0
	return wk.retry(ctx, "repair the roll-ups of partition "+strconv.Itoa(wk.p), func(ctx context.Context) error {
		if attempt++; attempt > 1 {
			if err := wk.a.awaitNoInsertsOf(ctx, wk.store, func(p int) bool { return p == wk.p },
				"waiting for a failed roll-up repair to finish before comparing again"); err != nil {
				return err
			}
		}
		written, skipped, unitsWritten, responses, err := wk.store.repairRollups(ctx, wk.p, a)
		wk.a.m.repairs.WithLabelValues("usage_responses").Add(float64(responses))
		if responses > 0 {
			wk.log.Warn("repaired usage_responses "+why, "rows", responses, "minutes_compared", len(a))
		}
		for i, r := range unitRollups {
			wk.a.m.repairs.WithLabelValues(r.table).Add(float64(unitsWritten[i]))
			if unitsWritten[i] > 0 {
				wk.log.Warn("repaired a roll-up "+why, "table", r.table, "correction_rows", unitsWritten[i], "minutes_compared", len(a))
			}
		}
		for i, r := range rollups {
			wk.a.m.repairs.WithLabelValues(r.table).Add(float64(written[i]))
			wk.a.m.repairs.WithLabelValues(r.skipped).Add(float64(skipped[i]))
			if written[i] > 0 {
				wk.log.Warn("repaired a roll-up "+why, "table", r.table, "correction_rows", written[i], "skipped_"+r.column+"s", skipped[i], "minutes_compared", len(a))
			} else if skipped[i] > 0 {
				wk.log.Warn("left a roll-up's "+r.column+"s from before migration 0064 as they are "+why, "table", r.table, "skipped_"+r.column+"s", skipped[i], "minutes_compared", len(a))
			}
		}
		return err
	})
}

func (wk *worker) setGauges() {
	p := strconv.Itoa(wk.p)
	ids, responses := wk.dedup.Len()
	wk.a.m.dedupIDs.WithLabelValues(p).Set(float64(ids))
	wk.a.m.dedupResponses.WithLabelValues(p).Set(float64(responses))
}

// count adds what the filter dropped and looked up to the metrics.
func (wk *worker) count(c dedup.Counts) {
	m := wk.a.m
	m.duplicates.Add(float64(c.Duplicates))
	m.responseDuplicates.Add(float64(c.ResponseDuplicates))
	m.displaced.Add(float64(c.Displaced))
	m.lookups.WithLabelValues("id").Add(float64(c.IDLookups))
	m.lookups.WithLabelValues("response").Add(float64(c.ResponseLookups))
	m.lookups.WithLabelValues("id_found").Add(float64(c.IDConfirms))
	m.lookups.WithLabelValues("response_found").Add(float64(c.ResponseConfirms))
	m.lookups.WithLabelValues("id_recalled").Add(float64(c.IDRecalled))
}

// fetch collects batches until ctx is done, then closes out. A batch closes when it holds
// BatchMaxRows rows or BatchMaxWait after its first message.
func (wk *worker) fetch(ctx context.Context, out chan<- *pending) {
	defer close(out)
	cfg := wk.a.cfg
	batches := pull.Batcher{Consumer: wk.cons, Stream: stream.Enriched, Log: wk.log,
		MaxItems: cfg.BatchMaxRows, MaxWait: cfg.BatchMaxWait}
	last, perMsg := 0, 0 // rows of the previous batch and of the last message
	var b *pending
	for ctx.Err() == nil {
		if b == nil { // an idle round keeps its empty batch for the next
			b = &pending{}
			select {
			case b.rows = <-wk.free:
			default:
				b.rows = make([]batch.Row, 0, min(2*last, rowsCap(cfg.BatchMaxRows)))
			}
		}
		batches.Next(ctx, func(msg jetstream.Msg) int {
			n := len(b.rows)
			b.rows = roomFor(b.rows, perMsg, rowsCap(cfg.BatchMaxRows))
			wk.take(b, msg)
			perMsg = len(b.rows) - n
			return perMsg
		})
		if len(b.msgs) == 0 {
			continue
		}
		last = len(b.rows)
		select {
		case out <- b:
		case <-ctx.Done():
			wk.nak(b)
		}
		b = nil
	}
}

// rowsCap is the capacity of a full batch's row array: the messages of a batch's last fetch
// take it past maxRows, by up to a quarter in practice.
func rowsCap(maxRows int) int { return maxRows + maxRows/4 }

// roomFor returns rows with room for another message of about perMsg rows. Decoding would grow
// the array by a quarter at a time, each step copying every row of the batch (~480 bytes
// each), which cost the aggregator 0.4 µs an event; here it doubles, up to limit, so that a
// batch copies its rows a few times at most.
func roomFor(rows []batch.Row, perMsg, limit int) []batch.Row {
	if cap(rows)-len(rows) >= perMsg {
		return rows
	}
	grown := make([]batch.Row, len(rows), max(min(2*cap(rows), limit), len(rows)+perMsg))
	copy(grown, rows)
	return grown
}

// recycle hands the row array of b, written, back to fetch, emptied (so that it keeps no
// event's strings alive): a batch of 64,000 rows is some 30 MB, which fetch otherwise
// allocated anew, and the garbage collector cleared, for every batch. Nothing holds the
// rows once flush returned: Group.Insert returns after its INSERT, and conflicts and
// decisions hold copies. It clears the rows decoding wrote, not the whole array: a batch
// that closes on BatchMaxWait, as every batch does below the maximum rate, fills a fraction
// of an array grown for a full one, and clearing all 30 MB of it cost more than decoding.
func (wk *worker) recycle(b *pending) {
	rows := b.rows[:cap(b.rows)]
	clear(rows[:min(b.written, len(rows))])
	select {
	case wk.free <- rows[:0]:
	default:
	}
}

// take decodes msg into b, or dead-letters it when it cannot be written. Rows with impossible
// values are quarantined on their own, and the rest of the message is taken; when their
// quarantine cannot be stored, the message is left unacked and comes back later.
func (wk *worker) take(b *pending, msg jetstream.Msg) {
	n := len(b.rows)
	rows, err := wk.decode(b.rows, msg)
	if err != nil {
		b.written = cap(b.rows) // the rows decoded before the error are past len
		wk.deadLetter(msg, err)
		return
	}
	b.written = max(b.written, len(rows))
	// The message's rows follow the batch's; the good ones are kept in place, moved only past
	// a bad one (a row is 480 bytes, and copying it costs a write barrier per string while
	// the garbage collector marks).
	good := n
	var bad []batch.Row
	var reasons []error
	for i := n; i < len(rows); i++ {
		if err := impossible(&rows[i]); err != nil {
			bad = append(bad, rows[i])
			reasons = append(reasons, fmt.Errorf("event %q: %w", rows[i].ID, err))
			continue
		}
		if good != i {
			rows[good] = rows[i]
		}
		good++
	}
	if len(bad) > 0 && !wk.quarantineRows(msg, bad, errors.Join(reasons...)) {
		return
	}
	b.msgs = append(b.msgs, msg)
	b.rows = rows[:good]
}

// impossible reports why r cannot be a real event priced by the enricher, or nil. The
// collector validates every event, so such a row comes from a broken or foreign publisher;
// writing it would put nonsense into the bill (a negative count becomes 0 in ClickHouse).
func impossible(r *batch.Row) error {
	const maxTokens = 100_000_000 // event.DefaultLimits.MaxTokens
	t := r.Tokens
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("empty event id"))
	}
	for _, c := range [...]struct {
		name string
		n    int64
	}{{"input", t.Input}, {"output", t.Output}, {"cached_input", t.CachedInput}, {"cache_write", t.CacheWrite}, {"cache_write_1h", t.CacheWrite1h}, {"reasoning", t.Reasoning}} {
		if c.n < 0 || c.n > maxTokens {
			errs = append(errs, fmt.Errorf("%s_tokens (%d) outside 0..%d", c.name, c.n, maxTokens))
		}
	}
	if t.CachedInput+t.CacheWrite > t.Input {
		errs = append(errs, fmt.Errorf("cached_input_tokens (%d) + cache_write_tokens (%d) exceed input_tokens (%d)", t.CachedInput, t.CacheWrite, t.Input))
	}
	if t.CacheWrite1h > t.CacheWrite {
		errs = append(errs, fmt.Errorf("cache_write_1h_tokens (%d) exceed cache_write_tokens (%d)", t.CacheWrite1h, t.CacheWrite))
	}
	if t.Reasoning > t.Output {
		errs = append(errs, fmt.Errorf("reasoning_tokens (%d) exceed output_tokens (%d)", t.Reasoning, t.Output))
	}
	if r.CostPico < 0 || r.SavingsPico < 0 {
		errs = append(errs, fmt.Errorf("negative cost (%d) or savings (%d) in picodollars", r.CostPico, r.SavingsPico))
	}
	// usage_events.time is a DateTime: seconds from 1970 to 2105.
	if r.Time.Before(time.Unix(0, 0)) || r.Time.After(time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC)) {
		errs = append(errs, fmt.Errorf("time %s outside what ClickHouse stores", r.Time.Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

// quarantineRows publishes rows of msg that cannot be written to USAGE_DEAD, as one batch
// with the reasons. It reports whether they are stored there.
func (wk *worker) quarantineRows(msg jetstream.Msg, rows []batch.Row, reason error) bool {
	source := stream.Enriched
	if md, err := msg.Metadata(); err == nil {
		source += "/" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	data, err := batch.Encode(rows)
	if err != nil {
		wk.deadLetter(msg, fmt.Errorf("encode %d impossible rows for quarantine: %w (%w)", len(rows), err, reason))
		return false
	}
	dead := nats.NewMsg(stream.DeadSubject("aggregator"))
	dead.Data = data
	dead.Header.Set(stream.HeaderReason, "impossible values: "+strings.ReplaceAll(reason.Error(), "\n", "; "))
	dead.Header.Set(stream.HeaderSource, source)
	dead.Header.Set(stream.HeaderSchema, batch.SchemaName)
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	if _, err := wk.a.js.PublishMsg(ctx, dead, jetstream.WithMsgID("aggregator-rows:"+source)); err != nil {
		wk.log.Error("cannot quarantine impossible rows; the message will be redelivered", "source", source, "reason", reason, "err", err)
		return false
	}
	wk.a.m.poison.Add(float64(len(rows)))
	wk.log.Warn("quarantined impossible rows", "source", source, "rows", len(rows), "reason", reason)
	return true
}

// decode appends the rows of msg to rows (decoding straight into the batch copies each row
// once); on error it returns nothing but the error.
func (wk *worker) decode(rows []batch.Row, msg jetstream.Msg) ([]batch.Row, error) {
	if s := msg.Headers().Get(stream.HeaderSchema); s != "" && s != batch.SchemaName {
		return nil, fmt.Errorf("payload schema %q is not %q", s, batch.SchemaName)
	}
	n := len(rows)
	rows, err := batch.AppendDecoded(rows, msg.Data())
	if err != nil {
		return nil, err
	}
	// The de-duplication sets of this partition only cover the ids and responses routed to
	// it; an event on the wrong partition could be written twice, by two workers.
	for i := n; i < len(rows); i++ {
		r := &rows[i]
		if q := stream.PartitionOf(r.Provider, r.ResponseID, r.ID, wk.a.cfg.Partitions); q != wk.p {
			return nil, fmt.Errorf("event %q belongs to partition %d of %d, not to %d", r.ID, q, wk.a.cfg.Partitions, wk.p)
		}
	}
	return rows, nil
}

// deadLetter publishes msg to USAGE_DEAD with the reason and acks it. When the publish
// fails, msg stays unacked and comes back after AckWait.
func (wk *worker) deadLetter(msg jetstream.Msg, reason error) {
	source := stream.Enriched
	if md, err := msg.Metadata(); err == nil {
		source += "/" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	dead := nats.NewMsg(stream.DeadSubject("aggregator"))
	dead.Data = msg.Data()
	dead.Header.Set(stream.HeaderReason, reason.Error())
	dead.Header.Set(stream.HeaderSource, source)
	if s := msg.Headers().Get(stream.HeaderSchema); s != "" {
		dead.Header.Set(stream.HeaderSchema, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	// The message id makes a second copy harmless if we die between publish and ack.
	if _, err := wk.a.js.PublishMsg(ctx, dead, jetstream.WithMsgID("aggregator:"+source)); err != nil {
		wk.log.Error("cannot dead-letter an undecodable message; it will be redelivered", "source", source, "reason", reason, "err", err)
		return
	}
	wk.a.m.poison.Inc()
	wk.log.Warn("dead-lettered an undecodable message", "source", source, "reason", reason)
	if err := msg.DoubleAck(ctx); err != nil {
		wk.log.Warn("ack a dead-lettered message", "source", source, "err", err)
	}
}

// flush writes the rows of b that ClickHouse does not hold yet, then acks b's messages:
// filter, insert, remember, ack (see dedup.Filter). It retries ClickHouse until it succeeds;
// it returns errStopped when ctx ends first.
func (wk *worker) flush(ctx context.Context, b *pending) error {
	if n, r := wk.dedup.Expire(); n > 0 || r > 0 {
		wk.log.Info("expired event ids from the de-duplication set", "ids", n, "responses", r)
	}
	rows, conflicts, decisions, counts, err := wk.dedup.Fresh(ctx, b.rows)
	wk.count(counts)
	if err != nil {
		return errStopped
	}
	b.conflicts = append(b.conflicts, conflicts...)
	// Before the INSERT: once the better report is written, a redelivered batch would find
	// it stored and never take the displaced one out of the roll-ups. Displacing is
	// idempotent, and a report whose every stored copy is displaced is written again.
	if err := wk.decide(ctx, decisions); err != nil {
		return errStopped
	}

	// uncertain collects the minutes of the rows that an INSERT of unknown outcome carried:
	// their roll-ups may lack what usage_events got.
	var uncertain affected
	backoff := minBackoff
	for attempt := 0; ; attempt++ {
		if !wk.lease.Held() {
			return errLeaseLapsed
		}
		wk.bind()
		if attempt > 0 {
			// The failed INSERT may have landed in part (one part per monthly partition), or
			// may still be running in ClickHouse although its client gave up (a lost answer,
			// a timeout): wait until no INSERT runs, then insert only what is still missing.
			// Checking earlier would miss rows about to land and write them twice (chaos
			// scenario 3 found this).
			if err := wk.a.awaitNoInserts(ctx, wk.store, "waiting for a failed INSERT to finish before checking which rows landed"); err != nil {
				return errStopped
			}
			var err error
			rows, conflicts, counts, err = wk.dedup.Landed(ctx, rows)
			wk.count(counts)
			if err != nil {
				return errStopped
			}
			b.conflicts = append(b.conflicts, conflicts...)
		}
		err := wk.insert(ctx, rows)
		if err == nil {
			break
		}
		if uncertain == nil {
			uncertain = affected{}
		}
		for i := range rows {
			uncertain.add(rows[i].Time)
		}
		err = fmt.Errorf("insert %d rows of partition %d: %w", len(rows), wk.p, err)
		wk.a.setReady(wk.p, err)
		if ctx.Err() == nil {
			wk.failed(ctx)
		}
		if ctx.Err() != nil {
			wk.log.Warn("insert failed at shutdown; the batch will be redelivered", "err", err)
			return errStopped
		}
		wk.log.Warn("insert failed; retrying", "err", err, "in", backoff)
		if !wk.wait(ctx, b, backoff) {
			return errStopped
		}
		backoff = min(2*backoff, maxBackoff)
	}

	if uncertain != nil {
		// Every INSERT of the partition has finished: the last one succeeded, and the failed
		// ones were waited for before it.
		if err := wk.repair(ctx, uncertain, "after an INSERT of unknown outcome"); err != nil {
			return errStopped
		}
	}

	wk.dedup.Remember(rows)
	wk.setGauges()
	wk.a.setReady(wk.p, nil)
	if err := wk.reportConflicts(ctx, b.conflicts); err != nil {
		return errStopped
	}
	if wk.a.beforeAck != nil {
		if err := wk.a.beforeAck(wk.p, len(rows)); err != nil {
			return err
		}
	}
	wk.ack(b)
	return nil
}

// decide takes the reports that ds displaced out of the roll-ups and records every decision
// in usage_conflicts, retrying until ClickHouse took both or ctx ends.
func (wk *worker) decide(ctx context.Context, ds []dedup.Decision) error {
	if len(ds) == 0 {
		return nil
	}
	at := wk.a.now().UTC().Truncate(time.Second)
	err := wk.retry(ctx, "take displaced reports out of the roll-ups", func(ctx context.Context) error {
		return wk.store.displace(ctx, wk.p, ds, at)
	})
	if err != nil {
		return err
	}
	err = wk.retry(ctx, "record the choice between reports of one call", func(ctx context.Context) error {
		return wk.store.recordDecisions(ctx, wk.p, ds, at)
	})
	if err != nil {
		return err
	}
	for i := range ds {
		if ds[i].Displaced {
			wk.log.Info("a report of higher rank displaced a stored report of the same call", "kept", ds[i].Kept.ID,
				"kept_source", ds[i].Kept.Source, "displaced", ds[i].Dropped.ID, "displaced_source", ds[i].Dropped.Source)
		}
	}
	return nil
}

// reportConflicts dead-letters each conflicting copy, with both fingerprints in the reason,
// and counts it. The message id makes a second report of the same copy (after a crash before
// the ack) harmless. It returns an error only when ctx ends before every report is stored.
func (wk *worker) reportConflicts(ctx context.Context, cs []dedup.Conflict) error {
	for i := range cs {
		c := &cs[i]
		data, err := batch.Encode([]batch.Row{c.Row})
		if err != nil {
			return fmt.Errorf("encode conflicting copy of event %q: %w", c.Row.ID, err)
		}
		reason := fmt.Sprintf("conflict: event id %q is already stored with different content (fingerprint %016x, this copy %016x); the first copy is kept",
			c.Row.ID, c.Stored, c.Got)
		dead := nats.NewMsg(stream.DeadSubject("aggregator"))
		dead.Data = data
		dead.Header.Set(stream.HeaderReason, reason)
		dead.Header.Set(stream.HeaderSource, stream.Enriched+"/partition "+strconv.Itoa(wk.p))
		dead.Header.Set(stream.HeaderSchema, batch.SchemaName)
		msgID := fmt.Sprintf("aggregator-conflict:%s:%016x", c.Row.ID, c.Got)
		err = wk.a.retry(ctx, wk.a.natsBreaker, "dead-letter a conflicting copy of event "+strconv.Quote(c.Row.ID), func(ctx context.Context) error {
			pctx, cancel := context.WithTimeout(ctx, ackTimeout)
			defer cancel()
			_, err := wk.a.js.PublishMsg(pctx, dead, jetstream.WithMsgID(msgID))
			return err
		}, nil)
		if err != nil {
			return err
		}
		wk.a.m.conflicts.Inc()
		wk.log.Warn("dropped a conflicting copy of an event and dead-lettered it", "reason", reason)
	}
	return nil
}

// insert writes rows through the breaker. The INSERT does not inherit ctx's cancellation, so
// that shutdown lets an insert in flight complete instead of leaving it half done.
func (wk *worker) insert(ctx context.Context, rows []batch.Row) error {
	if len(rows) == 0 {
		return nil
	}
	start := time.Now()
	_, err := wk.sh.breaker.Execute(func() (any, error) {
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), insertTimeout)
		defer cancel()
		return nil, wk.inserts.Insert(ictx, wk.p, rows)
	})
	if err != nil {
		wk.a.m.inserts.WithLabelValues("error").Inc()
		return err
	}
	wk.a.m.insertSecs.Observe(time.Since(start).Seconds())
	wk.a.m.inserts.WithLabelValues("ok").Inc()
	wk.a.m.rows.Add(float64(len(rows)))
	return nil
}

// wait sleeps d while telling JetStream that b's messages are still being worked on, so that
// they are not redelivered during a long outage. It reports false when ctx ends first.
func (wk *worker) wait(ctx context.Context, b *pending, d time.Duration) bool {
	for _, m := range b.msgs {
		_ = m.InProgress()
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// ack acks every message of b. A failed ack only means a redelivery, which the set absorbs.
func (wk *worker) ack(b *pending) {
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	for _, m := range b.msgs {
		if err := m.DoubleAck(ctx); err != nil {
			wk.log.Warn("ack failed; the message will be redelivered and skipped", "err", err)
		}
	}
}

// nak hands b's messages back for immediate redelivery, to this or the next process.
func (wk *worker) nak(b *pending) {
	for _, m := range b.msgs {
		_ = m.Nak()
	}
}
