// Package chschema holds tokenmeter's ClickHouse schema as numbered migrations: one statement
// per file, applied in order and recorded in the database's schema_migrations table. The
// statements name the database as {db}, so tests can apply them to a fresh database each.
//
// Every statement must run on ClickHouse 18.16.1 (the server Debian 12 ships) and on current
// releases: MergeTree-family engines with PARTITION BY / ORDER BY, Decimal, no LowCardinality,
// Map, DateTime64, TTL or codecs.
package chschema

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var files embed.FS

// Migration is one numbered schema change.
type Migration struct {
	Version uint32
	Name    string
	// SQL is the statement with {db} standing for the database name.
	SQL string
}

// Statement returns the migration's SQL for database db.
func (m Migration) Statement(db string) string { return strings.ReplaceAll(m.SQL, "{db}", db) }

// Migrations returns every migration in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(files, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".sql")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration file %s: name must start with a number and an underscore", e.Name())
		}
		data, err := files.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: uint32(v), Name: name, SQL: string(data)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}
