package migrate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/schemas/chschema"
)

// In cluster mode each migration becomes two statements per node (Cluster.Statements): the
// migration itself in the shard-local database, with every MergeTree-family engine turned into
// its Replicated counterpart, and its counterpart in the analysts' database, where each table
// is a Distributed table over the local ones under the same name and the plain views are
// created over those Distributed tables, so that analysts' SQL is unchanged. Materialized
// views exist in the local database only: they fire on the INSERT a node receives, and the
// rows they write replicate like any other (a replica fetching a part does not run them), so
// a roll-up counts each block once.
//
// A view's IN (SELECT ...) and JOIN become GLOBAL: over Distributed tables, a plain subquery
// would run on every shard against a Distributed table again (which ClickHouse refuses by
// default, distributed_product_mode = deny), or against shard-local data only. GLOBAL runs
// it once, over the whole cluster, and ships the result to the shards.
//
// Nodes are migrated in lock-step, one migration on every node before the next: an ALTER of
// a Replicated table replicates by itself (the other replica then answers that the column
// exists, which counts as applied), and a replica created after its table's structure changed
// in ZooKeeper would be refused. Each node records the migration in the analysts' database's
// schema_migrations, so a single-server Apply of that database (a command not told about the
// cluster) finds everything applied and changes nothing.

// Cluster names the databases and the cluster of a cluster-mode schema.
type Cluster struct {
	// Name is the cluster in the servers' remote_servers.
	Name string
	// Database is the analysts' database (Distributed tables, views); Local the shard-local one.
	Database, Local string
}

var (
	engine       = regexp.MustCompile(`(?i)ENGINE\s*=\s*(\w*)MergeTree(\s*\(([^)]*)\))?`)
	createTable  = regexp.MustCompile(`(?is)^\s*CREATE\s+TABLE\s+\{db\}\.(\w+)`)
	createMView  = regexp.MustCompile(`(?is)^\s*CREATE\s+MATERIALIZED\s+VIEW\b`)
	alterTable   = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+\{db\}\.\w+`)
	insertInto   = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\b`)
	modifyOrder  = regexp.MustCompile(`(?is),?\s*MODIFY\s+ORDER\s+BY\s*\([^)]*\)`)
	subqueryIn   = regexp.MustCompile(`(?i)\b((?:NOT\s+)?IN\s*\(\s*SELECT\b)`)
	joinKeywords = regexp.MustCompile(`(?i)\b(ANY|ALL)\s+(LEFT|INNER)\s+JOIN\b`)
	sqlComment   = regexp.MustCompile(`(?m)^\s*--.*$`)
)

// Statements returns the statements of migration m for the local and the analysts' database;
// an empty string is nothing to do there.
func (c Cluster) Statements(m chschema.Migration) (local, analysts string) {
	sql := strings.TrimSpace(sqlComment.ReplaceAllString(m.SQL, ""))
	local = strings.ReplaceAll(replicated(sql, c.Local), "{db}", c.Local)
	switch {
	case createMView.MatchString(sql), insertInto.MatchString(sql):
		// A backfill copies between a node's own tables; through the Distributed ones it
		// would copy every shard's rows to random shards.
		return local, ""
	case createTable.MatchString(sql) && engine.MatchString(sql):
		t := createTable.FindStringSubmatch(sql)[1]
		return local, fmt.Sprintf("CREATE TABLE %s.%s AS %s.%s ENGINE = Distributed(%s, %s, %s, rand())",
			c.Database, t, c.Local, t, c.Name, c.Local, t)
	case alterTable.MatchString(sql):
		// A Distributed table takes the columns; the sorting key is the local table's.
		a := modifyOrder.ReplaceAllString(sql, "")
		if !strings.Contains(strings.ToUpper(a), "COLUMN") {
			return local, ""
		}
		return local, strings.ReplaceAll(a, "{db}", c.Database)
	default: // views, DROP ... IF EXISTS
		v := subqueryIn.ReplaceAllString(sql, "GLOBAL $1")
		v = joinKeywords.ReplaceAllString(v, "GLOBAL $1 $2 JOIN")
		return local, strings.ReplaceAll(v, "{db}", c.Database)
	}
}

// replicated turns every MergeTree-family engine of sql into its Replicated counterpart,
// with the table's ZooKeeper path under its shard and the replica's name from the macros.
func replicated(sql, local string) string {
	t := createTable.FindStringSubmatch(sql)
	if t == nil {
		return sql
	}
	return engine.ReplaceAllStringFunc(sql, func(e string) string {
		g := engine.FindStringSubmatch(e)
		args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", local, t[1])
		if strings.TrimSpace(g[3]) != "" {
			args += ", " + g[3]
		}
		return fmt.Sprintf("ENGINE = Replicated%sMergeTree(%s)", g[1], args)
	})
}

// ApplyCluster applies every migration not yet applied to every node of the cluster: the
// shard-local database gets Replicated tables and materialized views, the analysts'
// database Distributed tables and views (see Cluster). nodes holds a connection to every
// replica of every shard. It returns the versions it applied on some node.
//
// Every node must answer when there is something to apply. When some do not but every node
// that answers has every migration, it returns without error, so that an aggregator can
// restart while a replica is down; a node down while a new migration was applied gets it
// from the next ApplyCluster (its Replicated tables take replicated ALTERs by themselves).
func ApplyCluster(ctx context.Context, nodes []driver.Conn, c Cluster) ([]uint32, error) {
	for _, db := range []string{c.Database, c.Local} {
		if err := ValidDatabase(db); err != nil {
			return nil, err
		}
	}
	if err := ValidDatabase(c.Name); err != nil {
		return nil, fmt.Errorf("cluster name: %w", err)
	}
	ms, err := chschema.Migrations()
	if err != nil {
		return nil, err
	}
	var up []driver.Conn
	var down []error
	for i, conn := range nodes {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			down = append(down, fmt.Errorf("node %d does not answer: %w", i, err))
			continue
		}
		up = append(up, conn)
	}
	if len(down) > 0 {
		for _, conn := range up {
			applied, err := appliedVersions(ctx, conn, c.Database)
			if err != nil || len(applied) < len(ms) {
				return nil, fmt.Errorf("apply migrations to every node of cluster %s: %w", c.Name, errors.Join(down...))
			}
			for _, m := range ms {
				if !applied[m.Version] {
					return nil, fmt.Errorf("apply migration %s to every node of cluster %s: %w", m.Name, c.Name, errors.Join(down...))
				}
			}
		}
		return nil, nil
	}
	for i, conn := range nodes {
		for _, q := range []string{
			"CREATE DATABASE IF NOT EXISTS " + c.Local,
			"CREATE DATABASE IF NOT EXISTS " + c.Database,
			"CREATE TABLE IF NOT EXISTS " + c.Database + ".schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version",
		} {
			if err := conn.Exec(ctx, q); err != nil {
				return nil, fmt.Errorf("prepare the cluster migrations of node %d: %s: %w", i, q, err)
			}
		}
	}
	seen := map[uint32]bool{}
	var done []uint32
	err = retry(ctx, func() (final bool, err error) {
		applied := make([]map[uint32]bool, len(nodes))
		for i, conn := range nodes {
			if applied[i], err = appliedVersions(ctx, conn, c.Database); err != nil {
				return true, fmt.Errorf("node %d: %w", i, err)
			}
		}
		err = applyLockstep(ctx, nodes, c, ms, applied, func(v uint32) {
			if !seen[v] {
				seen[v] = true
				done = append(done, v)
			}
		})
		return errors.Is(err, errRecord), err
	})
	return done, err
}

var errRecord = errors.New("record a migration")

func applyLockstep(ctx context.Context, nodes []driver.Conn, c Cluster, ms []chschema.Migration, applied []map[uint32]bool, did func(uint32)) error {
	for _, m := range ms {
		local, analysts := c.Statements(m)
		for i, conn := range nodes {
			if applied[i][m.Version] {
				continue
			}
			for _, q := range []string{local, analysts} {
				if q == "" {
					continue
				}
				if err := conn.Exec(ctx, q); err != nil && !alreadyExists(err) {
					return fmt.Errorf("apply migration %s to node %d: %w", m.Name, i, err)
				}
			}
			if err := record(ctx, conn, c.Database, m); err != nil {
				return fmt.Errorf("node %d: %w: %w", i, errRecord, err)
			}
			did(m.Version)
		}
	}
	return nil
}
