// Package migrate applies tokenmeter's ClickHouse migrations (schemas/chschema) to a database
// and records each one in the database's schema_migrations table, so that applying them again
// changes nothing.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/tokenmeter/tokenmeter/schemas/chschema"
)

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidDatabase reports whether db can be used unquoted in SQL as a database name.
func ValidDatabase(db string) error {
	if !identifier.MatchString(db) {
		return fmt.Errorf("database name %q: want letters, digits and underscores, not starting with a digit", db)
	}
	return nil
}

// Apply creates database db when missing and applies, in version order, every migration not yet
// recorded in db.schema_migrations. It returns the versions it applied.
//
// A migration whose table, view or column already exists counts as applied and is recorded:
// two processes applying at the same moment (the aggregator and the alerter start together)
// both try it, and a run that stopped between applying a migration and recording it leaves
// it applied but unrecorded, which must not wedge every later start.
func Apply(ctx context.Context, conn driver.Conn, db string) ([]uint32, error) {
	if err := ValidDatabase(db); err != nil {
		return nil, err
	}
	ms, err := chschema.Migrations()
	if err != nil {
		return nil, err
	}
	// The bookkeeping table cannot itself be a migration: it must exist before we can tell
	// which migrations have run.
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE TABLE IF NOT EXISTS " + db + ".schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare migrations of database %s: %s: %w", db, q, err)
		}
	}
	// A process that lags behind another re-applies what the other applied meanwhile; where
	// a migration drops and re-creates a view, the one ahead can find a view it depends on
	// dropped for a moment (TestApplyConcurrently found it). So a failed migration is tried
	// again a few times, from a fresh reading of what is applied.
	var done []uint32
	err = retry(ctx, func() (final bool, err error) {
		applied, err := appliedVersions(ctx, conn, db)
		if err != nil {
			return true, err
		}
		for _, m := range ms {
			if applied[m.Version] {
				continue
			}
			if err := notClusterNode(ctx, conn, db); err != nil {
				return true, err
			}
			if err := conn.Exec(ctx, m.Statement(db)); err != nil && !alreadyExists(err) {
				return false, fmt.Errorf("apply migration %s to database %s: %w", m.Name, db, err)
			}
			if err := record(ctx, conn, db, m); err != nil {
				return true, err
			}
			done = append(done, m.Version)
		}
		return true, nil
	})
	return done, err
}

// retry runs pass until it succeeds or says its error is final, at most applyAttempts times,
// waiting a little longer after each failure, and returns its last error.
func retry(ctx context.Context, pass func() (final bool, err error)) error {
	for attempt := 1; ; attempt++ {
		final, err := pass()
		if err == nil || final || attempt == applyAttempts {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// ErrClusterNode is Apply refusing to migrate a database on a node of a ClickHouse cluster:
// there the schema is the cluster's (ApplyCluster, which the aggregator runs when given the
// cluster), and single-server tables in the analysts' database would hide the Distributed ones.
var ErrClusterNode = errors.New("the server is a node of a ClickHouse cluster (it defines the {shard} macro): its schema is applied by the aggregator started with the cluster (-clickhouse-cluster); start it first")

// notClusterNode returns ErrClusterNode, naming db, when conn's server defines a shard macro.
func notClusterNode(ctx context.Context, conn driver.Conn, db string) error {
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.macros WHERE macro = 'shard'").Scan(&n); err != nil {
		return fmt.Errorf("check whether the server of database %s is a cluster node: %w", db, err)
	}
	if n > 0 {
		return fmt.Errorf("migrate database %s: %w", db, ErrClusterNode)
	}
	return nil
}

// applyAttempts bounds the tries of Apply when migrations fail.
const applyAttempts = 5

func appliedVersions(ctx context.Context, conn driver.Conn, db string) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, "SELECT version FROM "+db+".schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read applied migrations of database %s: %w", db, err)
	}
	defer rows.Close()
	applied := make(map[uint32]bool)
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read applied migrations of database %s: %w", db, err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read applied migrations of database %s: %w", db, err)
	}
	return applied, nil
}

func record(ctx context.Context, conn driver.Conn, db string, m chschema.Migration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".schema_migrations (version, name, applied_at)")
	if err != nil {
		return fmt.Errorf("record migration %s in %s.schema_migrations: %w", m.Name, db, err)
	}
	if err := b.Append(m.Version, m.Name, time.Now().UTC()); err != nil {
		_ = b.Abort()
		return fmt.Errorf("record migration %s in %s.schema_migrations: %w", m.Name, db, err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("record migration %s in %s.schema_migrations: %w", m.Name, db, err)
	}
	return nil
}

// alreadyExists reports whether err is ClickHouse refusing to create what is already there:
// TABLE_ALREADY_EXISTS (57, tables and views), DUPLICATE_COLUMN (15), or ILLEGAL_COLUMN (44),
// which ClickHouse 18.16 answers to ADD COLUMN of an existing column.
func alreadyExists(err error) bool {
	var ex *proto.Exception
	if !errors.As(err, &ex) {
		return false
	}
	return ex.Code == 57 || ex.Code == 15 || ex.Code == 44 && strings.Contains(ex.Message, "already exists")
}
