// Package reconcile is the operators' check of the pipeline's guarantee: it compares what
// USAGE_RAW accepted — as its copies in USAGE_HISTORY hold it — partition by partition
// (sequence range, messages, distinct event ids), with what ClickHouse's usage_events holds, and lists the ids missing, stored
// twice, or stored without a raw message. "tokenmeter reconcile" runs it; the fault-injection
// suite (bench/chaos) ends every scenario with it.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
)

// Config says where the stream and the table to compare are.
type Config struct {
	// NATSURL is the NATS server holding USAGE_HISTORY; NATS names the credentials and TLS
	// files to connect with (natsauth's reconcile identity reads that stream and nothing else).
	NATSURL string
	NATS    natsconn.Config
	// ClickHouseDSN and Database locate usage_events.
	ClickHouseDSN, Database string
	// Partitions is the number of USAGE_RAW partitions; every stage uses the same number.
	Partitions int
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.NATSURL == "" {
		errs = append(errs, errors.New("-nats is empty"))
	}
	if _, err := clickhouse.ParseDSN(c.ClickHouseDSN); err != nil {
		errs = append(errs, fmt.Errorf("-clickhouse %q: %w", redact.DSN(c.ClickHouseDSN), redact.DSNError(err, c.ClickHouseDSN)))
	}
	if c.Database == "" {
		errs = append(errs, errors.New("-database is empty"))
	}
	if c.Partitions < 1 || c.Partitions > 1<<16 {
		errs = append(errs, fmt.Errorf("-partitions (%d) must be between 1 and 65536", c.Partitions))
	}
	return errors.Join(errs...)
}

// Run connects to NATS and ClickHouse as c says and runs Check.
func Run(ctx context.Context, c Config) ([]Partition, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	nc, err := natsconn.Connect(c.NATSURL, "tokenmeter-reconcile", c.NATS)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open JetStream on %s: %w", c.NATSURL, err)
	}
	opts, err := clickhouse.ParseDSN(c.ClickHouseDSN)
	if err != nil {
		return nil, fmt.Errorf("parse ClickHouse DSN %q: %w", redact.DSN(c.ClickHouseDSN), redact.DSNError(err, c.ClickHouseDSN))
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse %s: %w", redact.DSN(c.ClickHouseDSN), redact.DSNError(err, c.ClickHouseDSN))
	}
	defer conn.Close()
	return Check(ctx, js, conn, c.Database, c.Partitions)
}

// Partition is the reconciliation of one partition: what USAGE_RAW accepted against what
// ClickHouse holds.
type Partition struct {
	Partition int
	// FirstSeq and LastSeq are the USAGE_HISTORY sequence range of the partition's raw
	// messages read.
	FirstSeq, LastSeq uint64
	Messages          int
	// Undecodable counts raw messages that are not a batch (quarantined by the enricher).
	Undecodable int
	// Accepted is the distinct event ids in the raw messages; Stored the distinct ids of the
	// partition in usage_events; Rows its rows; Displaced the stored reports a better report
	// of the same call displaced (usage_conflicts), which no longer count.
	Accepted, Stored, Rows, Displaced int
	// Missing are accepted ids not stored; Merged accepted ids not stored because another
	// report of the same provider call (same provider and response_id, another id) is, as
	// the aggregator keeps only one; Doubled ids stored more than once, or a call
	// stored under two ids; Unknown ids stored but not in the raw messages read (expected when
	// USAGE_HISTORY no longer holds their copies). Each list holds at most MaxListed
	// ids.
	Missing, Merged, Doubled, Unknown []string
	// Counts of the four, which the lists may cut short.
	MissingN, MergedN, DoubledN, UnknownN int
}

// MaxListed bounds the ids each list of a Partition holds.
const MaxListed = 20

// OK reports whether nothing is missing and nothing doubled.
func (p Partition) OK() bool { return p.MissingN == 0 && p.DoubledN == 0 }

// Check reads every copy of a USAGE_RAW message that USAGE_HISTORY holds, collects the event
// ids of each partition and compares them with usage_events of db: accepted ids missing in
// ClickHouse, ids stored twice, and ids stored that the history no longer holds (older than
// the operator's audit window, -history-max-bytes / -history-max-age). What it proves is
// bounded by that window: within it, nothing accepted is missing; at any age, nothing is
// stored twice. It reads whole partitions into memory, so it suits a check after a test run or
// an operator's spot check, not a continuous audit.
func Check(ctx context.Context, js jetstream.JetStream, conn driver.Conn, db string, partitions int) ([]Partition, error) {
	st, err := js.Stream(ctx, stream.History)
	if err != nil {
		return nil, fmt.Errorf("reconcile: look up stream %s: %w", stream.History, err)
	}
	awaitCopies(ctx, st)
	out := make([]Partition, partitions)
	accepted := make([]map[string]string, partitions) // id → its call's key ("" without response_id)
	for p := range out {
		out[p].Partition = p
		accepted[p] = map[string]string{}
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{stream.RawSubjects},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: read %s: %w", stream.History, err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reconcile: read %s: %w", stream.History, err)
	}
	// Messages copied after this snapshot are left for the next check; asking for no more
	// than is left returns without waiting. On a JetStream cluster a fetch can find no
	// responder while the consumer's server changes, so a fetch that brings nothing is retried
	// a few times before the check gives up.
	empty := 0
	for left := ci.NumPending; left > 0; {
		mb, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("reconcile: fetch from %s: %w", stream.History, err)
		}
		n := 0
		for m := range mb.Messages() {
			n++
			left--
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("reconcile: message metadata: %w", err)
			}
			seq := md.Sequence.Stream
			p, _, err := stream.ParseRawSubject(m.Subject())
			if err != nil || p >= partitions {
				return nil, fmt.Errorf("reconcile: message %d on subject %q is not one of %d partitions", seq, m.Subject(), partitions)
			}
			part := &out[p]
			if part.Messages == 0 {
				part.FirstSeq = seq
			}
			part.LastSeq = seq
			part.Messages++
			rows, err := batch.Decode(m.Data())
			if err != nil {
				part.Undecodable++
				continue
			}
			for i := range rows {
				accepted[p][rows[i].ID] = callKey(rows[i].Provider, rows[i].ResponseID)
			}
			if left == 0 {
				break
			}
		}
		if n > 0 {
			empty = 0
			continue
		}
		err = mb.Error()
		if err == nil {
			err = errors.New("no message within 2s")
		}
		if empty++; empty == maxEmptyFetches {
			return nil, fmt.Errorf("reconcile: read %s with %d raw copies left: %w", stream.History, left, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(empty) * 200 * time.Millisecond):
		}
	}
	for p := range out {
		if err := compare(ctx, conn, db, &out[p], accepted[p]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxEmptyFetches is how many fetches in a row may bring nothing before Check gives up.
const maxEmptyFetches = 5

// awaitCopies waits, for up to 5 s, until USAGE_HISTORY has copied everything USAGE_RAW has
// stored, so that a check after a run reads every raw message. Under steady traffic the copy
// may never be quite level; the check then reads what is copied, and an event stored but not
// yet copied counts as unknown, never as missing.
func awaitCopies(ctx context.Context, st jetstream.Stream) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		info, err := st.Info(ctx)
		if err != nil {
			return
		}
		level := true
		for _, src := range info.Sources {
			if src.Name == stream.Raw && src.Lag > 0 || src.Active < 0 {
				level = false
			}
		}
		if level && len(info.Sources) > 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// callKey names a provider call as the aggregator de-duplicates it: lower(provider) and
// response_id, or "" for an event without a response_id.
func callKey(provider, responseID string) string {
	if responseID == "" {
		return ""
	}
	return strings.ToLower(provider) + "\x00" + responseID
}

func compare(ctx context.Context, conn driver.Conn, db string, part *Partition, accepted map[string]string) error {
	// A report displaced by a better report of the same call stays in usage_events as
	// reported, but no longer counts: it is not a second copy of its call.
	rows, err := conn.Query(ctx, "SELECT event_id, count(), any(provider), any(response_id), "+
		"event_id IN (SELECT event_id FROM "+db+".cost_corrections WHERE kind = 'displaced') "+
		"FROM "+db+".usage_events WHERE partition = ? GROUP BY event_id", uint16(part.Partition))
	if err != nil {
		return fmt.Errorf("reconcile: read event ids of partition %d from %s.usage_events: %w", part.Partition, db, err)
	}
	defer rows.Close()
	stored := make(map[string]struct{}, len(accepted))
	calls := map[string][]string{} // call key → the ids stored for it
	for rows.Next() {
		var (
			id, provider, response string
			n                      uint64
			displaced              uint8
		)
		if err := rows.Scan(&id, &n, &provider, &response, &displaced); err != nil {
			return fmt.Errorf("reconcile: read event ids of partition %d: %w", part.Partition, err)
		}
		stored[id] = struct{}{}
		if displaced == 1 {
			part.Displaced++
		} else if k := callKey(provider, response); k != "" {
			calls[k] = append(calls[k], id)
		}
		part.Rows += int(n)
		if n > 1 {
			part.DoubledN++
			part.Doubled = appendListed(part.Doubled, id)
		}
		if _, ok := accepted[id]; !ok {
			part.UnknownN++
			part.Unknown = appendListed(part.Unknown, id)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reconcile: read event ids of partition %d: %w", part.Partition, err)
	}
	for _, ids := range calls {
		sort.Strings(ids)
		for _, id := range ids[min(len(ids), 1):] { // a call stored under a second id
			part.DoubledN++
			part.Doubled = appendListed(part.Doubled, id)
		}
	}
	part.Accepted, part.Stored = len(accepted), len(stored)
	for id, call := range accepted {
		if _, ok := stored[id]; ok {
			continue
		}
		if _, ok := calls[call]; ok && call != "" {
			part.MergedN++
			part.Merged = appendListed(part.Merged, id)
			continue
		}
		part.MissingN++
		part.Missing = appendListed(part.Missing, id)
	}
	sort.Strings(part.Missing)
	sort.Strings(part.Merged)
	sort.Strings(part.Doubled)
	sort.Strings(part.Unknown)
	return nil
}

func appendListed(list []string, id string) []string {
	if len(list) < MaxListed {
		list = append(list, id)
	}
	return list
}

// WriteReport prints one line per partition and the ids found missing, doubled or unknown.
func WriteReport(w io.Writer, parts []Partition) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-9s %-21s %8s %11s %9s %9s %9s %8s %8s %8s %8s\n", "partition", "raw sequences", "messages", "undecodable", "accepted", "stored", "displaced", "missing", "merged", "doubled", "unknown")
	for _, p := range parts {
		seqs := "-"
		if p.Messages > 0 {
			seqs = fmt.Sprintf("%d-%d", p.FirstSeq, p.LastSeq)
		}
		fmt.Fprintf(&b, "%-9d %-21s %8d %11d %9d %9d %9d %8d %8d %8d %8d\n", p.Partition, seqs, p.Messages, p.Undecodable, p.Accepted, p.Stored, p.Displaced, p.MissingN, p.MergedN, p.DoubledN, p.UnknownN)
	}
	for _, p := range parts {
		for _, l := range []struct {
			what string
			ids  []string
		}{{"missing", p.Missing}, {"merged", p.Merged}, {"doubled", p.Doubled}, {"unknown", p.Unknown}} {
			if len(l.ids) > 0 {
				fmt.Fprintf(&b, "partition %d %s: %s\n", p.Partition, l.what, strings.Join(l.ids, " "))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Err names every partition with an id missing or doubled, or is nil when there is none.
// Ids stored without a raw message are not an error: USAGE_HISTORY drops its oldest copies.
func Err(parts []Partition) error {
	var errs []error
	for _, p := range parts {
		if !p.OK() {
			errs = append(errs, fmt.Errorf("partition %d: %d accepted ids missing from usage_events, %d stored more than once", p.Partition, p.MissingN, p.DoubledN))
		}
	}
	return errors.Join(errs...)
}
