// Package chconfig is where a tokenmeter command finds ClickHouse: the DSN, a file holding the
// password of its user (so that the DSN, which sits in environment variables and manifests,
// carries none), and the database. Every stage and command that reads or writes ClickHouse
// takes the same flags and checks them the same way.
package chconfig

import (
	"errors"
	"flag"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/migrate"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// Defaults: the local server of deploy/clickhouse/local.sh.
const (
	DefaultDSN      = "clickhouse://127.0.0.1:9000"
	DefaultDatabase = "tokenmeter"
)

// Config names the server, its user's password file and the database.
type Config struct {
	DSN          string
	PasswordFile string
	Database     string
}

// Default is the local server's configuration.
var Default = Config{DSN: DefaultDSN, Database: DefaultDatabase}

// RegisterFlags adds -clickhouse, -clickhouse-password-file and -database to fs, with c's
// values as their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DSN, "clickhouse", c.DSN, "ClickHouse DSN")
	fs.StringVar(&c.PasswordFile, "clickhouse-password-file", c.PasswordFile,
		"file holding the password of the ClickHouse DSN's user, kept out of the DSN (a Kubernetes Secret, a compose volume)")
	fs.StringVar(&c.Database, "database", c.Database, "ClickHouse database")
}

// Check reports, naming the flags, a DSN that does not parse and a database name that cannot
// be used in SQL unquoted. The stages' configurations check their DSN and database with it.
func Check(dsn, database string) error {
	var errs []error
	if _, err := clickhouse.ParseDSN(dsn); err != nil {
		errs = append(errs, fmt.Errorf("-clickhouse %q: %w", redact.DSN(dsn), redact.DSNError(err, dsn)))
	}
	if err := migrate.ValidDatabase(database); err != nil {
		errs = append(errs, fmt.Errorf("-database: %w", err))
	}
	return errors.Join(errs...)
}

// Validate checks c: the DSN, the database and the password file.
func (c Config) Validate() error {
	_, err := c.ResolvedDSN()
	return errors.Join(Check(c.DSN, c.Database), err)
}

// ResolvedDSN is the DSN with the password file's content as its user's password; the DSN as
// it is without a password file (ops.ClickHouseDSN says what it refuses).
func (c Config) ResolvedDSN() (string, error) {
	dsn, err := ops.ClickHouseDSN(c.DSN, c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("-clickhouse-password-file: %w", err)
	}
	return dsn, nil
}
