package alerting

import (
	"errors"
	"flag"
	"fmt"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage"
	"github.com/tokenmeter/tokenmeter/stage/chconfig"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// Flags holds what the alerter's command line gives besides Config's own fields: the files
// its secrets are read from.
type Flags struct {
	ClickHouse       chconfig.Config
	SilenceTokenFile string
}

// RegisterFlags adds the alerter's flags to fs, with c's values as their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet, f *Flags) {
	fs.StringVar(&c.RulesFile, "rules", c.RulesFile, "rules file (YAML); empty runs the built-in rules without receivers")
	f.ClickHouse.RegisterFlags(fs)
	fs.StringVar(&f.SilenceTokenFile, "silence-token-file", f.SilenceTokenFile, "file holding the bearer token that creating or expiring a silence on the ops address needs (default: none needed)")
	fs.DurationVar(&c.EvalInterval, "eval-interval", c.EvalInterval, "how often rules are evaluated")
	fs.DurationVar(&c.ReloadInterval, "reload-interval", c.ReloadInterval, "how often the rules file is checked for changes")
	fs.Int64Var(&c.SeenMaxBytes, "seen-max-bytes", c.SeenMaxBytes, "memory of the event ids and responses remembered to count copies once; past it the 2-minute window shortens, never below 30s (negative: unbounded)")
	c.Streams.RegisterFlags(fs)
}

// Command is the alerter as a process of its own (cmd/alerter); its ops address also serves
// the silences API (/api/v2/silences).
func Command() stage.Command {
	cfg := Config{EvalInterval: DefaultEvalInterval, ReloadInterval: DefaultReloadInterval, SeenMaxBytes: DefaultSeenMaxBytes, Streams: stream.DefaultOptions}
	f := Flags{ClickHouse: chconfig.Default}
	return stage.Command{
		Name:    "alerter",
		OpsAddr: ":9104",
		Flags:   func(fs *flag.FlagSet) { cfg.RegisterFlags(fs, &f) },
		Validate: func() error {
			dsn, err := f.ClickHouse.ResolvedDSN()
			token, tokenErr := ops.SecretFile("silence token", f.SilenceTokenFile)
			if tokenErr != nil {
				tokenErr = fmt.Errorf("-silence-token-file: %w", tokenErr)
			}
			cfg.ClickHouseDSN, cfg.Database, cfg.SilenceToken = dsn, f.ClickHouse.Database, token
			if dsn == "" { // the password file was refused: check the DSN as given
				cfg.ClickHouseDSN = f.ClickHouse.DSN
			}
			return errors.Join(err, tokenErr, cfg.WithDefaults().Validate())
		},
		Start: func(p stage.Process) (stage.Service, error) {
			cfg.Registerer, cfg.Logger = p.Registry, p.Log
			a, err := New(cfg, p.NATS)
			if err != nil {
				return nil, err
			}
			p.Ops.Handle("/api/v2/", a.SilenceHandler()) // silences (Alertmanager API v2)
			return a, nil
		},
	}
}
