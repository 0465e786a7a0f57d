package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/deploy/standalone"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// defaultCredsDir is where `tokenmeter run` keeps the NATS identities with its default -data.
func defaultCredsDir() string {
	return filepath.Join(envOr("TOKENMETER_DATA_DIR", ".data"), "nats", "creds")
}

// runNATS implements "tokenmeter nats init" (every role's nkey seed and the nats-server
// users for them) and "tokenmeter nats add-emitter NAME" (a service's own identity).
func runNATS(args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "init" && args[0] != "add-emitter") {
		return errors.New("want: nats init [-dir DIR] [-partitions N] | nats add-emitter [-dir DIR] NAME")
	}
	sub := args[0]
	fs := flag.NewFlagSet("nats "+sub, flag.ContinueOnError)
	dir := fs.String("dir", envOr("TOKENMETER_NATS_CREDS", defaultCredsDir()), "directory of the nkey seeds (tokenmeter run's -nats-creds)")
	partitions := fs.Int("partitions", stream.DefaultPartitions, "partitions of USAGE_ENRICHED, one aggregator consumer each")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch {
	case sub == "init" && fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case sub == "add-emitter" && fs.NArg() != 1:
		return errors.New("want: nats add-emitter [-dir DIR] NAME")
	}
	if err := natsauth.Ensure(*dir); err != nil {
		return err
	}
	if sub == "add-emitter" {
		seed, err := natsauth.AddEmitter(*dir, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "emitter %s: nkey seed in %s (mode 0600): give it to the service alone.\n", fs.Arg(0), seed)
		fmt.Fprintf(stdout, "tokenmeter run admits it within %s; a nats-server including %s after a reload (nats-server --signal reload).\n",
			standalone.EmitterPoll, natsauth.ConfFile)
	}
	conf, err := natsauth.WriteConf(*dir, *partitions)
	if err != nil {
		return err
	}
	if sub == "init" {
		for _, r := range natsauth.Roles {
			fmt.Fprintf(stdout, "%-10s %s\n", r, natsauth.SeedFile(*dir, r))
		}
	}
	fmt.Fprintf(stdout, "nats-server users: %s (include it in the server's configuration)\n", conf)
	return nil
}

// natsFlags adds the natsconn flags to fs, -nats-nkey defaulting to role's seed in the
// credentials directory of `tokenmeter run` when that file exists, so that the commands
// reach the local pipeline with no flag. Call the returned function after fs.Parse: it sets
// what the command line left unset from TOKENMETER_NATS_NKEY, _CA, _CERT and _KEY.
func natsFlags(fs *flag.FlagSet, c *natsconn.Config, role natsauth.Role) func() error {
	seed := natsauth.SeedFile(envOr("TOKENMETER_NATS_CREDS", defaultCredsDir()), role)
	if _, err := os.Stat(seed); err != nil {
		seed = ""
	}
	only := flag.NewFlagSet("nats", flag.ContinueOnError)
	c.Register(only, seed)
	only.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	return func() error { return envForUnset(fs, only) }
}

// envForUnset sets each flag of only that the command line left unset from its environment
// variable (ops.EnvName: -stream-max-bytes from TOKENMETER_STREAM_MAX_BYTES).
func envForUnset(fs, only *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	only.VisitAll(func(f *flag.Flag) {
		key := ops.EnvName(f.Name)
		if v := os.Getenv(key); v != "" && !given[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q (flag -%s): %v", key, v, f.Name, err))
			}
		}
	})
	return errors.Join(errs...)
}
