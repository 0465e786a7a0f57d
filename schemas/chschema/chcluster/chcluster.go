// Package chcluster describes a sharded, replicated ClickHouse for tokenmeter: the cluster's
// name in remote_servers, the replicas of each shard, and which shard each stream partition
// is written to (the partition → shard map).
//
// In cluster mode every table lives twice on each node: as a Replicated* table in the
// shard-local database (Layout.LocalDatabase, by default the analysts' database with _local
// appended), which the aggregator writes, and as a Distributed table of the same name in the
// analysts' database, which every reader queries (package migrate, ApplyCluster). A partition
// is written to its shard only, by its one writer, so the one-writer-per-partition argument of
// the single server holds shard by shard.
package chcluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// LocalSuffix ends the name of the shard-local database by default.
const LocalSuffix = "_local"

// Layout is a ClickHouse cluster. The zero value means a single server (no cluster).
type Layout struct {
	// Name is the cluster as the servers' remote_servers declare it; Distributed tables name it.
	Name string
	// Shards lists each shard's replicas in order of preference.
	Shards [][]Replica
	// PartitionShards maps stream partition p to shard PartitionShards[p]; empty means
	// p mod len(Shards).
	PartitionShards []int
	// LocalDatabase is the shard-local database; empty means the analysts' database + LocalSuffix.
	LocalDatabase string
}

// Replica is one ClickHouse server of a shard.
type Replica struct {
	// Addr is the native protocol's host:port.
	Addr string
	// HTTPPort is its HTTP interface's port; 0 derives it from Addr's port on the standard
	// ports (9000 -> 8123, 9440 -> 8443).
	HTTPPort int
}

// Enabled reports whether l describes a cluster.
func (l Layout) Enabled() bool { return len(l.Shards) > 0 }

// Local returns the shard-local database for analysts' database db.
func (l Layout) Local(db string) string {
	if l.LocalDatabase != "" {
		return l.LocalDatabase
	}
	return db + LocalSuffix
}

// ShardOf returns the shard that partition p is written to.
func (l Layout) ShardOf(p int) int {
	if len(l.PartitionShards) > 0 {
		return l.PartitionShards[p]
	}
	return p % len(l.Shards)
}

var name = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem of an enabled layout for partitions stream partitions.
func (l Layout) Validate(partitions int) error {
	if !l.Enabled() {
		return nil
	}
	var errs []error
	if !name.MatchString(l.Name) {
		errs = append(errs, fmt.Errorf("cluster name %q: want letters, digits and underscores, not starting with a digit", l.Name))
	}
	if l.LocalDatabase != "" && !name.MatchString(l.LocalDatabase) {
		errs = append(errs, fmt.Errorf("local database %q: want letters, digits and underscores, not starting with a digit", l.LocalDatabase))
	}
	seen := map[string]bool{}
	for s, rs := range l.Shards {
		if len(rs) == 0 {
			errs = append(errs, fmt.Errorf("shard %d has no replica", s))
		}
		for _, r := range rs {
			if _, _, err := net.SplitHostPort(r.Addr); err != nil {
				errs = append(errs, fmt.Errorf("shard %d: replica address %q: %w", s, r.Addr, err))
			} else if _, err := r.httpPort(); err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", s, err))
			}
			if seen[r.Addr] {
				errs = append(errs, fmt.Errorf("shard %d: replica %s is listed twice", s, r.Addr))
			}
			seen[r.Addr] = true
		}
	}
	if len(l.PartitionShards) > 0 {
		if len(l.PartitionShards) != partitions {
			errs = append(errs, fmt.Errorf("partition → shard map has %d entries for %d partitions", len(l.PartitionShards), partitions))
		}
		for p, s := range l.PartitionShards {
			if s < 0 || s >= len(l.Shards) {
				errs = append(errs, fmt.Errorf("partition %d maps to shard %d, not one of the %d shards (0..%d)", p, s, len(l.Shards), len(l.Shards)-1))
			}
		}
	}
	return errors.Join(errs...)
}

func (r Replica) httpPort() (int, error) {
	if r.HTTPPort > 0 {
		return r.HTTPPort, nil
	}
	_, port, _ := net.SplitHostPort(r.Addr)
	switch port {
	case "9000":
		return 8123, nil
	case "9440":
		return 8443, nil
	}
	return 0, fmt.Errorf("replica %s: the HTTP port cannot be derived from native port %s; write it as %s/<http port>", r.Addr, port, r.Addr)
}

// HTTPURL returns the base URL of r's HTTP interface for user and password, with settings as
// query parameters (ClickHouse takes settings there).
func (r Replica) HTTPURL(user, password string, settings url.Values) (string, error) {
	port, err := r.httpPort()
	if err != nil {
		return "", err
	}
	host, native, _ := net.SplitHostPort(r.Addr)
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: "/", RawQuery: settings.Encode()}
	if native == "9440" && r.HTTPPort == 0 {
		u.Scheme = "https"
	}
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String(), nil
}

// Parse reads a layout written as NAME=SHARD;SHARD;... where a SHARD is REPLICA,REPLICA,...
// and a REPLICA is host:port or host:port/httpport, e.g.
// "tokenmeter=ch-0a:9000,ch-0b:9000;ch-1a:9000,ch-1b:9000". An empty string is no cluster.
func Parse(s string) (Layout, error) {
	if strings.TrimSpace(s) == "" {
		return Layout{}, nil
	}
	n, shards, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(shards) == "" {
		return Layout{}, fmt.Errorf("cluster %q: want NAME=host:port,host:port;host:port,host:port (shards separated by ';', replicas by ',')", s)
	}
	l := Layout{Name: strings.TrimSpace(n)}
	for sh := range strings.SplitSeq(shards, ";") {
		var rs []Replica
		for r := range strings.SplitSeq(sh, ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			addr, hp, hasHTTP := strings.Cut(r, "/")
			rep := Replica{Addr: addr}
			if hasHTTP {
				p, err := strconv.Atoi(hp)
				if err != nil || p < 1 || p > 65535 {
					return Layout{}, fmt.Errorf("cluster %q: replica %q: HTTP port %q is not a port number", s, r, hp)
				}
				rep.HTTPPort = p
			}
			rs = append(rs, rep)
		}
		l.Shards = append(l.Shards, rs)
	}
	return l, nil
}

// ParseShardMap reads a partition → shard map written as the shard of each partition in
// order, e.g. "0,1,0,1" for 4 partitions. An empty string is the default map (mod).
func ParseShardMap(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var m []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("partition → shard map %q: %q is not a shard number", s, f)
		}
		m = append(m, n)
	}
	return m, nil
}

// writerSettings are what every tokenmeter connection that writes needs on a cluster (see
// WriteOptions); on a single server they change nothing.
//
//   - insert_deduplicate=0: Replicated tables drop an inserted block identical to one of the
//     last hundred, and so do the blocks the materialized views write. tokenmeter never relies
//     on that to make a retry exact (a single server does not do it), so it could only drop
//     real rows: two INSERTs of different events, or two re-ratings of different events, that
//     roll up to identical spend_1m blocks (same minute, group, counts and cost).
//   - insert_distributed_sync=1: an INSERT into a Distributed table returns once every shard
//     holds its rows, so that a writer reading back what it wrote (re-rating, outcomes) finds
//     it, and the insert carries the connection's settings to the shards.
var writerSettings = map[string]any{"insert_deduplicate": 0, "insert_distributed_sync": 1}

// WriteOptions adds to opts the settings a writer needs on a cluster — insert_deduplicate=0
// and insert_distributed_sync=1 — keeping whatever its DSN set itself.
func WriteOptions(opts *clickhouse.Options) {
	if opts.Settings == nil {
		opts.Settings = clickhouse.Settings{}
	}
	for k, v := range writerSettings {
		if _, set := opts.Settings[k]; !set {
			opts.Settings[k] = v
		}
	}
}
