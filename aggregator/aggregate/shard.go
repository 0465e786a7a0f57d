package aggregate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sony/gobreaker"
	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
)

// A shard is where a set of partitions is written: the single server, or in cluster mode
// (Config.Cluster) one shard's replicas, of which the shard's workers all use one at a time
// (so that their INSERTs still share blocks) and move to another when it stops answering.
//
// Moving keeps the one-writer argument. First the replica left behind must be inactive in
// ZooKeeper (fenced): a server that stopped answering may still be finishing an INSERT (a
// SIGTERMed ClickHouse completes its running queries; the cluster test doubled two events
// before this check), and only once its session is gone can it commit nothing more — at
// once after a clean stop, after the session timeout after a crash or a partition. Then the
// new replica is used only once it holds every part the shard's replicas committed (SYSTEM
// SYNC REPLICA on each Replicated table of the local database; it waits while a committed
// part exists only on a replica that is down), so that the lookups and repairs that follow
// an INSERT of unknown outcome see all that landed. A replica killed in the middle of an
// INSERT either committed the part (the new replica fetches it) or not (it is dropped at
// restart, and the rows are inserted again).
type shard struct {
	n        int
	db       string // the database the shard's tables live in (the local one in cluster mode)
	breaker  *gobreaker.CircuitBreaker
	replicas []*replica

	mu  sync.Mutex
	cur int // the replica in use
}

type replica struct {
	addr    string
	conn    driver.Conn
	inserts *chwrite.Group
}

// syncTimeout bounds one SYSTEM SYNC REPLICA before a move to a replica is tried again.
const syncTimeout = 10 * time.Second

// current returns the replica in use and a store reading the shard through it (and looking
// for INSERTs on every replica of the shard).
func (s *shard) current() (*replica, store) {
	s.mu.Lock()
	r := s.replicas[s.cur]
	s.mu.Unlock()
	st := store{conn: r.conn, db: s.db, breaker: s.breaker}
	for _, o := range s.replicas {
		if o != r {
			st.peers = append(st.peers, o.conn)
		}
	}
	return r, st
}

// failed is told that a call through r failed. When r is still the replica in use and does
// not answer a ping, the shard moves to the next replica that answers and has caught up with
// the shard's replication log; it reports the move, or why none was made.
func (s *shard) failed(ctx context.Context, r *replica) (moved bool, err error) {
	if len(s.replicas) == 1 {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replicas[s.cur] != r {
		return false, nil // another worker moved already
	}
	if ping(ctx, r.conn) == nil {
		return false, nil
	}
	var errs []error
	answering := 0
	for _, o := range s.replicas {
		if o != r && ping(ctx, o.conn) == nil {
			answering++
		}
	}
	for i := 1; i < len(s.replicas); i++ {
		next := (s.cur + i) % len(s.replicas)
		o := s.replicas[next]
		if err := ping(ctx, o.conn); err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %w", o.addr, err))
			continue
		}
		if err := fenced(ctx, o.conn, s.db, answering); err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %w", o.addr, err))
			continue
		}
		if err := syncReplica(ctx, o.conn, s.db); err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %w", o.addr, err))
			continue
		}
		s.cur = next
		return true, nil
	}
	return false, fmt.Errorf("shard %d: replica %s does not answer and no other can take over: %w", s.n, r.addr, errors.Join(errs...))
}

func ping(ctx context.Context, conn driver.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return conn.Ping(ctx)
}

// fenced reports, through the replica of conn, whether ZooKeeper counts no more active
// replicas of db's tables than the answering ones: a replica that does not answer but is still
// active may still commit an INSERT (a server shutting down finishes its running queries;
// a frozen one keeps its session until it times out), and once it is inactive its session is
// gone and it can commit nothing more. This is the fence a move needs.
func fenced(ctx context.Context, conn driver.Conn, db string, answering int) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	var active uint64
	if err := conn.QueryRow(ctx, "SELECT toUInt64(max(active_replicas)) FROM system.replicas WHERE database = ?", db).Scan(&active); err != nil {
		return fmt.Errorf("count the active replicas of %s: %w", db, err)
	}
	if int(active) > answering {
		return fmt.Errorf("ZooKeeper counts %d active replicas of %s and %d answer: the silent one may still commit an INSERT", active, db, answering)
	}
	return nil
}

// syncReplica waits until the replica of conn has fetched every part its Replicated tables in
// db have in ZooKeeper's log.
func syncReplica(ctx context.Context, conn driver.Conn, db string) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE 'Replicated%'", db)
	if err != nil {
		return fmt.Errorf("list the replicated tables of %s: %w", db, err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return fmt.Errorf("list the replicated tables of %s: %w", db, err)
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list the replicated tables of %s: %w", db, err)
	}
	for _, t := range tables {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+db+"."+t); err != nil {
			return fmt.Errorf("catch up with the replication log of %s.%s: %w", db, t, err)
		}
	}
	return nil
}

// shards opens the shards: in cluster mode each of Config.Cluster's, with a connection and an
// INSERT group per replica; otherwise the one server of the DSN. Connections open lazily.
// owned counts the owned partitions per shard (the members of its INSERT groups).
func (a *Aggregator) shards(owned []int) ([]*shard, func(), error) {
	var conns []driver.Conn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	l := a.cfg.Cluster
	if !l.Enabled() {
		conn, err := clickhouse.Open(a.chOpts)
		if err != nil {
			return nil, nil, fmt.Errorf("open ClickHouse: %w", err)
		}
		conns = append(conns, conn)
		in, err := chwrite.NewInserter(a.cfg.ClickHouseHTTP, a.cfg.Database)
		if err != nil {
			closeAll()
			return nil, nil, err // Validate checked it
		}
		r := &replica{addr: a.chOpts.Addr[0], conn: conn, inserts: chwrite.NewGroup(in, len(a.cfg.Owned), a.cfg.BatchMaxWait)}
		return []*shard{{db: a.cfg.Database, breaker: a.chBreaker, replicas: []*replica{r}}}, closeAll, nil
	}
	// Replicated tables de-duplicate an inserted block identical to a recent one, and so do
	// the blocks the materialized views write; repair rows can repeat too. Every block we
	// write is new by construction, so that is turned off on every connection of the cluster
	// (chcluster.WriteOptions), the HTTP INSERTs' included.
	settings := url.Values{"insert_deduplicate": {"0"}}
	var out []*shard
	for n, rs := range l.Shards {
		sh := &shard{n: n, db: l.Local(a.cfg.Database), breaker: a.newBreaker(fmt.Sprintf("clickhouse shard %d", n))}
		for _, rep := range rs {
			opts := *a.chOpts
			opts.Addr = []string{rep.Addr}
			opts.Settings = maps.Clone(a.chOpts.Settings)
			chcluster.WriteOptions(&opts)
			conn, err := clickhouse.Open(&opts)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("open ClickHouse %s of shard %d: %w", rep.Addr, n, err)
			}
			conns = append(conns, conn)
			base, err := rep.HTTPURL(a.chOpts.Auth.Username, a.chOpts.Auth.Password, settings)
			if err != nil {
				closeAll()
				return nil, nil, err // Validate checked it
			}
			in, err := chwrite.NewInserter(base, sh.db)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			sh.replicas = append(sh.replicas, &replica{addr: rep.Addr, conn: conn, inserts: chwrite.NewGroup(in, max(owned[n], 1), a.cfg.BatchMaxWait)})
		}
		out = append(out, sh)
	}
	return out, closeAll, nil
}

// shardOf returns the shard partition p is written to.
func (a *Aggregator) shardOf(p int) int {
	if !a.cfg.Cluster.Enabled() {
		return 0
	}
	return a.cfg.Cluster.ShardOf(p)
}
