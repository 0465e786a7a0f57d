// Package aggregate is the aggregator stage: it consumes USAGE_ENRICHED and writes every event
// to ClickHouse's usage_events exactly once; materialized views fill the roll-ups from the
// same INSERT, and the partition's writer repairs them by difference when an INSERT's outcome
// is unknown (repair.go).
//
// Exactly-once effect rests on never inserting a duplicate. Every copy of an event lands on
// the partition stream.PartitionOf(provider, response id, id, n), and each partition has
// exactly one writer, whose dedup.Filter decides which rows are new: filter, insert,
// remember, ack (worker.flush). Several aggregators may share a database by owning disjoint
// sets of partitions (Config.Owned); each is still the one writer of its own. The filter's
// sets are rebuilt from ClickHouse at start, so whatever happened before — a crash between an
// insert and its acks, an INSERT that landed half — the redelivered events already written
// are found and skipped, and only the missing ones are inserted. Messages are acked only
// after their rows are in ClickHouse.
//
// Events that name a provider response are routed by it, so two reports of one call under
// different event ids (a proxy and an SDK) meet on one partition too; its writer also keeps
// the set of responses written (rebuilt the same way) and drops the second report, counting
// it in tokenmeter_aggregator_response_duplicates_total.
package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sony/gobreaker"

	"github.com/tokenmeter/tokenmeter/aggregator/lease"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Back-off between retries of a failed remote call.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

var errNotStarted = errors.New("not started: migrations, streams and de-duplication set are not ready yet")

// Aggregator is the stage. Run it once.
type Aggregator struct {
	cfg    Config
	chOpts *clickhouse.Options
	js     jetstream.JetStream
	log    *slog.Logger
	m      *metrics
	// chBreaker guards ClickHouse, natsBreaker the JetStream management calls.
	chBreaker, natsBreaker *gobreaker.CircuitBreaker
	now                    func() time.Time
	// leaseTTL is the lease bucket's TTL (lease.DefaultTTL; tests shorten it).
	leaseTTL time.Duration
	// partitions holds each owned partition's reason not to be ready, nil when it is (and
	// for the partitions of other aggregators).
	partitions []atomic.Pointer[error]
	// owned[p] tells whether partition p is this aggregator's (Config.Owned).
	owned []bool
	// shardList holds where the partitions are written (shard.go), set by Run.
	shardList atomic.Pointer[shardList]

	// beforeAck, when set (Config.BeforeAck, or tests), runs after a batch is inserted and
	// before its messages are acked; an error stops the worker there, as a crash would.
	beforeAck func(partition, rows int) error
}

// New validates cfg (after applying defaults), registers the metrics and returns the stage.
// It does not connect to ClickHouse; Run does.
func New(cfg Config, nc *nats.Conn) (*Aggregator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aggregator config: %w", err)
	}
	if nc == nil {
		return nil, errors.New("aggregator: nil NATS connection")
	}
	opts, err := clickhouse.ParseDSN(cfg.ClickHouseDSN)
	if err != nil {
		return nil, fmt.Errorf("aggregator config: ClickHouseDSN %q: %w", redact.DSN(cfg.ClickHouseDSN), redact.DSNError(err, cfg.ClickHouseDSN))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream context: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	a := &Aggregator{
		cfg: cfg, chOpts: opts, js: js, log: cfg.Logger, m: m, now: time.Now, leaseTTL: lease.DefaultTTL,
		partitions: make([]atomic.Pointer[error], cfg.Partitions),
		owned:      make([]bool, cfg.Partitions),
		beforeAck:  cfg.BeforeAck,
	}
	for _, p := range cfg.Owned {
		a.owned[p] = true
	}
	for _, p := range cfg.Owned {
		a.setReady(p, errNotStarted)
	}
	a.chBreaker = a.newBreaker("clickhouse")
	a.natsBreaker = gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        "jetstream",
		Timeout:     5 * time.Second,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
	})
	return a, nil
}

// newBreaker returns a circuit breaker guarding ClickHouse (or, in cluster mode, one shard).
func (a *Aggregator) newBreaker(name string) *gobreaker.CircuitBreaker {
	return gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        name,
		Timeout:     5 * time.Second,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
		OnStateChange: func(name string, from, to gobreaker.State) {
			a.m.breaker.Set(float64(to))
			a.log.Warn("ClickHouse circuit breaker changed state", "breaker", name, "from", from.String(), "to", to.String())
		},
	})
}

// Ready reports why the aggregator cannot write now, or nil: before start-up is done, while
// the ClickHouse breaker is open, and while any partition's last insert failed.
func (a *Aggregator) Ready() error {
	var errs []error
	if s := a.chBreaker.State(); s == gobreaker.StateOpen {
		errs = append(errs, errors.New("ClickHouse circuit breaker is open"))
	}
	for _, sh := range a.shardList.Load().list() {
		if sh.breaker != a.chBreaker && sh.breaker.State() == gobreaker.StateOpen {
			errs = append(errs, fmt.Errorf("ClickHouse shard %d: circuit breaker is open", sh.n))
		}
	}
	for p := range a.partitions {
		if err := a.partitions[p].Load(); err != nil && *err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", p, *err))
		}
	}
	return errors.Join(errs...)
}

func (a *Aggregator) setReady(p int, err error) { a.partitions[p].Store(&err) }

// Run applies the ClickHouse migrations, ensures the streams and runs one worker per owned
// partition until ctx is done; it then finishes the insert in flight and returns nil. It
// returns an error only when a worker cannot go on.
func (a *Aggregator) Run(ctx context.Context) error {
	owned := make([]int, max(len(a.cfg.Cluster.Shards), 1))
	for _, p := range a.cfg.Owned {
		owned[a.shardOf(p)]++
	}
	// The workers of a shard share their INSERTs: one block of every partition costs
	// ClickHouse far less than one small block per partition.
	shards, closeAll, err := a.shards(owned)
	if err != nil {
		return err
	}
	defer closeAll()
	a.shardList.Store(&shardList{shards})

	err = a.retry(ctx, a.chBreaker, "apply ClickHouse migrations", func(ctx context.Context) error {
		applied, err := a.migrate(ctx, shards)
		if len(applied) > 0 {
			a.log.Info("applied ClickHouse migrations", "database", a.cfg.Database, "versions", applied)
		}
		return err
	}, nil)
	if err != nil {
		return nil // ctx is done
	}
	err = a.retry(ctx, a.natsBreaker, "ensure streams", func(ctx context.Context) error {
		return stream.Ensure(ctx, a.js, a.cfg.Streams)
	}, nil)
	if err != nil {
		return nil
	}
	var leases jetstream.KeyValue
	err = a.retry(ctx, a.natsBreaker, "open the partition leases", func(ctx context.Context) error {
		var err error
		leases, a.leaseTTL, err = lease.Open(ctx, a.js, a.leaseTTL)
		return err
	}, nil)
	if err != nil {
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, a.cfg.Partitions)
	var wg sync.WaitGroup
	for _, sh := range shards {
		if owned[sh.n] == 0 {
			continue
		}
		// Each shard starts on its own: one that is down holds back its own partitions only.
		wg.Go(func() {
			if r, _ := sh.current(); ping(ctx, r.conn) != nil {
				_, _ = sh.failed(ctx, r) // move when another replica can take over
			}
			_, st := sh.current()
			if err := a.awaitNoInserts(ctx, st, "waiting for INSERTs of a previous aggregator to finish before loading the de-duplication sets"); err != nil {
				return // ctx is done
			}
			for _, p := range a.cfg.Owned {
				if a.shardOf(p) != sh.n {
					continue
				}
				wg.Go(func() {
					if err := a.runPartition(ctx, sh, lease.New(leases, p, a.cfg.Instance, a.leaseTTL, a.now), p); err != nil {
						errs[p] = fmt.Errorf("partition %d: %w", p, err)
						cancel()
					}
				})
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// migrate applies the migrations: to the single server, or in cluster mode to every node
// (migrate.ApplyCluster).
func (a *Aggregator) migrate(ctx context.Context, shards []*shard) ([]uint32, error) {
	if !a.cfg.Cluster.Enabled() {
		_, st := shards[0].current()
		return migrate.Apply(ctx, st.conn, a.cfg.Database)
	}
	var nodes []driver.Conn
	for _, sh := range shards {
		for _, r := range sh.replicas {
			nodes = append(nodes, r.conn)
		}
	}
	return migrate.ApplyCluster(ctx, nodes, migrate.Cluster{Name: a.cfg.Cluster.Name, Database: a.cfg.Database, Local: a.cfg.Cluster.Local(a.cfg.Database)})
}

// shardList is the shards of a running aggregator.
type shardList struct{ shards []*shard }

func (l *shardList) list() []*shard {
	if l == nil {
		return nil
	}
	return l.shards
}

// retry calls fn through breaker until it succeeds or ctx is done, backing off exponentially
// (capped). Each failure is logged and, when p is not nil, makes partition *p not ready. It
// returns ctx's error when ctx ends first.
func (a *Aggregator) retry(ctx context.Context, breaker *gobreaker.CircuitBreaker, what string, fn func(context.Context) error, p *int) error {
	backoff := minBackoff
	for {
		_, err := breaker.Execute(func() (any, error) { return nil, fn(ctx) })
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err = fmt.Errorf("%s: %w", what, err)
		if p != nil {
			a.setReady(*p, err)
		}
		a.log.Warn("retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// consumerName is the durable consumer of partition p.
func consumerName(p int) string { return stream.AggregatorConsumer(p) }

func (a *Aggregator) consumer(ctx context.Context, p int) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := a.retry(ctx, a.natsBreaker, "create consumer "+consumerName(p), func(ctx context.Context) error {
		var err error
		cons, err = a.js.CreateOrUpdateConsumer(ctx, stream.Enriched, jetstream.ConsumerConfig{
			Durable:       consumerName(p),
			Description:   "aggregator: writes partition " + strconv.Itoa(p) + " to ClickHouse",
			FilterSubject: stream.EnrichedSubject(p),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       a.cfg.AckWait,
			// Acks trail inserts by a batch or two; the limit only has to stay out of the way.
			MaxAckPending: 20_000,
			MaxDeliver:    -1,
		})
		return err
	}, &p)
	return cons, err
}

// awaitNoInserts waits until ClickHouse runs no INSERT into usage_events that may carry rows
// of an owned partition, logging why while it waits. At start-up it runs before any worker
// loads its de-duplication set: an aggregator killed while sending an INSERT can leave it
// running in ClickHouse, which then lands after the process is gone; a set loaded before it
// lands would miss its ids, and their next copies would be written twice (chaos scenario 2
// found this). After a failed INSERT it runs before the worker checks which rows landed, for
// the same reason. Each partition has one writer, so an INSERT into owned partitions running
// now is a predecessor's or a failed one's (or a partner worker's, which only makes the wait
// longer).
//
// An aggregator that owns every partition waits for every INSERT into usage_events; one that
// shares the database with others tells theirs apart by their query ids and does not wait for
// them. ClickHouse 18.16 did not list an HTTP INSERT whose body had not all arrived (seen
// here with a body held open), so empty looks must span a while: ten, 100 ms apart, cover a
// query still in the socket or being received.
// (With a wait of 100 ms and INSERTs of other partitions not waited for, chaos scenario 3
// once doubled 1,261 rows after ClickHouse came back from an outage; the cause was not
// pinned down, and the longer look is the guard.)
func (a *Aggregator) awaitNoInserts(ctx context.Context, st store, why string) error {
	mine := func(p int) bool { return p < len(a.owned) && a.owned[p] }
	if len(a.cfg.Owned) == a.cfg.Partitions {
		mine = func(int) bool { return true }
	}
	return a.awaitNoInsertsOf(ctx, st, mine, why)
}

// awaitNoInsertsOf is awaitNoInserts for the INSERTs that may carry rows of a partition for
// which mine is true.
func (a *Aggregator) awaitNoInsertsOf(ctx context.Context, st store, mine func(partition int) bool, why string) error {
	const looks = 10
	empty := 0
	var since time.Time // when the INSERTs waited for were first seen
	for empty < looks {
		var running []runningInsert
		breaker := a.chBreaker
		if st.breaker != nil {
			breaker = st.breaker
		}
		err := a.retry(ctx, breaker, "look for INSERTs of a previous aggregator", func(ctx context.Context) error {
			var err error
			running, err = st.runningInserts(ctx, mine)
			return err
		}, nil)
		if err != nil {
			return err
		}
		if len(running) == 0 {
			empty, since = empty+1, time.Time{}
		} else {
			empty = 0
			a.log.Warn(why, "running", len(running))
			if since.IsZero() {
				since = time.Now()
			}
			// An INSERT of these partitions that ClickHouse still runs after StuckInsertAfter
			// is stuck (its client gave up long ago; a hung connection, a server in trouble):
			// waiting on would stop the partitions for good. This aggregator is their only
			// writer, so the INSERT is an earlier attempt of its own; killed, it has landed in
			// full, in part or not at all, which the caller finds out and repairs as after any
			// INSERT of unknown outcome. INSERTs made by hand are left alone.
			var stuck []string
			for _, r := range running {
				if r.known {
					stuck = append(stuck, r.id)
				}
			}
			if len(stuck) > 0 && time.Since(since) >= a.cfg.StuckInsertAfter {
				a.log.Warn("killing INSERTs of this aggregator's partitions that ClickHouse has run for too long", "queries", stuck, "after", a.cfg.StuckInsertAfter)
				if err := st.kill(ctx, stuck); err != nil {
					a.log.Warn("kill stuck INSERTs; waiting on", "err", err)
				} else {
					a.m.stuckKilled.Add(float64(len(stuck)))
				}
				since = time.Time{}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
