package aggregate

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/aggregator/chwrite"
	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/chconfig"
)

// Defaults of the zero-valued Config fields.
const (
	DefaultClickHouseDSN = chconfig.DefaultDSN
	DefaultDatabase      = chconfig.DefaultDatabase
	DefaultBatchMaxRows  = 50_000
	// DefaultBatchMaxWait: every INSERT costs ClickHouse a part in usage_events and each
	// roll-up, and their merges, whatever its rows. With 200 ms, ClickHouse spent 60.1 µs an
	// event at 10,000 events/s and 29.7 at 40,000; with 500 ms 39.4 and 20.6. The p99 from
	// accept to queryable rose from 0.5 to 1.0 s at 10,000 events/s and fell at 50,000 (2.7
	// and 5.9 s → 1.6 and 3.4 s), where less ClickHouse work left the pipeline the CPU it
	// needed (docs/benchmarks.md, session 13).
	DefaultBatchMaxWait = 500 * time.Millisecond
	DefaultDedupWindow  = time.Hour
	// DefaultDedupMaxBytes: at keyset.BytesPerKey (12) a key and two keys an event, 11 million
	// events of the window — an hour at 3,100 events/s — before the window shortens.
	DefaultDedupMaxBytes = 256 << 20
	DefaultAckWait       = 2 * time.Minute
	// DefaultStuckInsertAfter is how long an INSERT of the aggregator's own partitions may
	// run, waited for after a failed one, before it is killed as stuck.
	DefaultStuckInsertAfter = 2 * time.Minute
	// MinDedupWindow keeps the window well above JetStream's redelivery and duplicate-window
	// times, whose copies it must always catch.
	MinDedupWindow = 5 * time.Minute
)

// Config configures the aggregator. Zero fields take the defaults above (Partitions:
// stream.DefaultPartitions; Registerer: a private registry; Logger: discard).
type Config struct {
	ClickHouseDSN string
	// ClickHouseHTTP is ClickHouse's HTTP interface, where the inserts go (as RowBinary, far
	// cheaper to produce than the native protocol's columns); the default is derived from
	// ClickHouseDSN on the standard ports (9000 -> http on 8123, 9440 -> https on 8443).
	ClickHouseHTTP string
	Database       string
	// Cluster, when enabled, writes to a sharded, replicated ClickHouse instead of the server
	// of ClickHouseDSN, whose user, password and settings it uses on every node (ClickHouseDSN's
	// address and ClickHouseHTTP are then unused): the migrations go to every node (Replicated
	// tables in Cluster.Local(Database), Distributed tables and views in Database), and each
	// partition's rows to the shard Cluster.ShardOf maps it to, through one of its replicas.
	Cluster chcluster.Layout
	// Partitions must equal the collector's: events are routed by stream.PartitionOf.
	Partitions int
	// Streams sizes the streams this aggregator ensures at start-up (stream.Ensure).
	Streams stream.Options
	// Owned lists the partitions this aggregator writes; empty means all of them. Several
	// aggregators share the work by owning disjoint sets that together cover every
	// partition (e.g. 0,1 and 2,3 of 4). Each partition must have one writer at a time: its
	// de-duplication sets live in that writer's memory.
	Owned []int
	// Instance names this aggregator in the partition leases (package lease); default the
	// host name. An aggregator restarted under the same name takes its partitions back at
	// once; one under another name waits for them to be released or to expire.
	Instance string
	// A batch is inserted when it holds BatchMaxRows rows or BatchMaxWait after its first
	// message arrived, whichever comes first. Messages are not split, so a batch can exceed
	// BatchMaxRows by the rows of the messages of its last fetch.
	BatchMaxRows int
	BatchMaxWait time.Duration
	// DedupWindow is how long the in-memory sets of written event ids and provider responses
	// keep an event, from the later of its receipt and its own time. It bounds memory, not
	// correctness: a copy of an event timed before the window — a late re-send, a redelivery
	// after a long outage — is looked up in ClickHouse near its own time instead, when its
	// hour holds events the sets no longer do, which costs a query per 1,000 such events. The
	// sets cost about 15 bytes per event with an id and a response id (BenchmarkSetBytesPerID):
	// at 1,000 events/s the default hour holds 3.6 million events, about 54 MB. Widen it when
	// late events are common (a spooled backlog replayed after an outage longer than the
	// window is all looked up).
	DedupWindow time.Duration
	// DedupMaxBytes bounds the memory of those sets over all the partitions the aggregator
	// owns (default DefaultDedupMaxBytes; negative: unbounded). Past it, the oldest events
	// leave the sets before the window ends — as if the window were shorter, never below
	// MinDedupWindow — and copies of them are looked up in ClickHouse: memory stays bounded
	// at any rate, exactness is untouched.
	DedupMaxBytes int64
	// StuckInsertAfter: an INSERT of the aggregator's partitions still running this long
	// after it was first waited for is killed (default DefaultStuckInsertAfter).
	StuckInsertAfter time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering; it must be well
	// above the time of an insert.
	AckWait    time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger

	// BeforeAck is a test hook; leave it nil in production. When set, it runs after each
	// batch's rows are in ClickHouse and before its messages are acked, with the partition and
	// the rows the batch inserted (0 when all were duplicates); an error stops the aggregator
	// there, as a crash would. Fault-injection tests use it (through the aggregator command built
	// with -tags testhooks and TOKENMETER_TEST_EXIT_AFTER_INSERT) to die exactly between an
	// insert and its ack.
	BeforeAck func(partition, rows int) error
}

func (c Config) withDefaults() Config {
	if c.ClickHouseDSN == "" {
		c.ClickHouseDSN = DefaultClickHouseDSN
	}
	if c.ClickHouseHTTP == "" && !c.Cluster.Enabled() {
		c.ClickHouseHTTP, _ = chwrite.HTTPURL(c.ClickHouseDSN) // Validate reports the error
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Partitions == 0 {
		c.Partitions = stream.DefaultPartitions
	}
	if c.Streams == (stream.Options{}) {
		c.Streams = stream.DefaultOptions
	}
	if c.Streams.Partitions == 0 {
		c.Streams.Partitions = c.Partitions
	}
	if len(c.Owned) == 0 && c.Partitions > 0 && c.Partitions <= 1<<16 { // Validate reports a bad count
		c.Owned = make([]int, c.Partitions)
		for p := range c.Owned {
			c.Owned[p] = p
		}
	}
	if c.Instance == "" {
		c.Instance, _ = os.Hostname()
		if c.Instance == "" {
			c.Instance = "aggregator"
		}
	}
	if c.BatchMaxRows == 0 {
		c.BatchMaxRows = DefaultBatchMaxRows
	}
	if c.BatchMaxWait == 0 {
		c.BatchMaxWait = DefaultBatchMaxWait
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.DedupMaxBytes == 0 {
		c.DedupMaxBytes = DefaultDedupMaxBytes
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.StuckInsertAfter == 0 {
		c.StuckInsertAfter = DefaultStuckInsertAfter
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field of c (after defaults are applied), naming its value.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, chconfig.Check(c.ClickHouseDSN, c.Database))
	if c.Cluster.Enabled() {
		// Every replica's HTTP URL comes from the layout (Cluster.Validate).
	} else if c.ClickHouseHTTP == "" {
		if _, err := chwrite.HTTPURL(c.ClickHouseDSN); err != nil {
			errs = append(errs, fmt.Errorf("-clickhouse-http: %w", redact.DSNError(err, c.ClickHouseDSN)))
		}
	} else if _, err := chwrite.NewInserter(c.ClickHouseHTTP, "db"); err != nil {
		errs = append(errs, fmt.Errorf("-clickhouse-http: %w", redact.DSNError(err, c.ClickHouseHTTP)))
	}
	if err := c.Streams.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Cluster.Validate(c.Partitions); err != nil {
		errs = append(errs, fmt.Errorf("-clickhouse-cluster: %w", err))
	}
	if c.Cluster.Enabled() && c.Cluster.Local(c.Database) == c.Database {
		errs = append(errs, fmt.Errorf("-local-database: the shard-local database must differ from -database %q", c.Database))
	}
	if c.Partitions < 1 || c.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("-partitions (%d) must be between 1 and 65536", c.Partitions))
	}
	seen := map[int]bool{}
	for _, p := range c.Owned {
		switch {
		case p < 0 || p >= c.Partitions:
			errs = append(errs, fmt.Errorf("-own: partition %d is not one of the %d partitions (0..%d)", p, c.Partitions, c.Partitions-1))
		case seen[p]:
			errs = append(errs, fmt.Errorf("-own: partition %d is listed twice", p))
		}
		seen[p] = true
	}
	if c.BatchMaxRows < 1 {
		errs = append(errs, fmt.Errorf("-batch-max-rows (%d) must be positive", c.BatchMaxRows))
	}
	if c.BatchMaxWait < time.Millisecond {
		errs = append(errs, fmt.Errorf("-batch-max-wait (%v) must be at least 1ms", c.BatchMaxWait))
	}
	if c.DedupWindow < MinDedupWindow {
		errs = append(errs, fmt.Errorf("-dedup-window (%v) must be at least %v", c.DedupWindow, MinDedupWindow))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("-ack-wait (%v) must be at least 1s", c.AckWait))
	}
	return errors.Join(errs...)
}

// ParsePartitions reads a list of partitions such as "0,1" or "0-3,6" (ranges inclusive), the
// form of the aggregator's -own flag. It checks the syntax only; Validate checks the numbers
// against the partition count.
func ParsePartitions(s string) ([]int, error) {
	var ps []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b-a >= 1<<16 {
			return nil, fmt.Errorf("partition list %q: %q is not a partition number or a range like 0-3", s, f)
		}
		for p := a; p <= b; p++ {
			ps = append(ps, p)
		}
	}
	return ps, nil
}
