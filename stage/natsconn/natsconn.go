// Package natsconn connects a tokenmeter command to NATS under its own identity: the flags
// that name its credentials (an nkey seed file) and its TLS files, and the nats.Options they
// make. Every stage command, the proxy, the dashboard, reconcile and the Go emitter use it, so
// that a flag means the same everywhere.
package natsconn

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Config names the files a client connects with; every field is optional.
type Config struct {
	// NKeyFile holds the client's nkey seed (a line starting "SU"): its identity, whose
	// permissions the server grants. "" connects without credentials.
	NKeyFile string
	// CAFile verifies the server's certificate (PEM); "" trusts the system roots, and with
	// no TLS file set the connection is plain unless the URL is tls://.
	CAFile string
	// CertFile and KeyFile are the client's certificate and key (PEM), for servers that
	// verify clients; both or neither.
	CertFile, KeyFile string
}

// Register adds -nats-nkey, -nats-ca, -nats-cert and -nats-key to fs, with nkeyDefault as
// the default of -nats-nkey. Under ops.ApplyEnv they read TOKENMETER_NATS_NKEY,
// TOKENMETER_NATS_CA, TOKENMETER_NATS_CERT and TOKENMETER_NATS_KEY.
func (c *Config) Register(fs *flag.FlagSet, nkeyDefault string) {
	fs.StringVar(&c.NKeyFile, "nats-nkey", nkeyDefault, "file holding this client's NATS nkey seed (its identity and permissions); \"\" = none")
	fs.StringVar(&c.CAFile, "nats-ca", "", "CA certificate (PEM) that verifies the NATS server; setting it turns TLS on")
	fs.StringVar(&c.CertFile, "nats-cert", "", "client certificate (PEM) for a NATS server that verifies clients")
	fs.StringVar(&c.KeyFile, "nats-key", "", "key (PEM) of -nats-cert")
}

// IsFlag says whether name is one of the flags Register adds.
func IsFlag(name string) bool {
	fs := flag.NewFlagSet("natsconn", flag.ContinueOnError)
	new(Config).Register(fs, "")
	return fs.Lookup(name) != nil
}

// Validate reports every file that is set but cannot be used.
func (c Config) Validate() error {
	var errs []error
	if c.NKeyFile != "" {
		if _, err := PublicKey(c.NKeyFile); err != nil {
			errs = append(errs, err)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fmt.Errorf("NATS client certificate %q and key %q: set both or neither", c.CertFile, c.KeyFile))
	}
	for _, f := range []string{c.CAFile, c.CertFile, c.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("NATS TLS file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Options are the nats.Options that connect as c says: the nkey (signing the server's
// challenge from the seed file, read again at each connect) with its inbox prefix, and TLS.
func (c Config) Options() ([]nats.Option, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed %s: %w", c.NKeyFile, err)
		}
		pub, _ := PublicKey(c.NKeyFile)
		opts = append(opts, o, nats.CustomInboxPrefix(InboxPrefix(pub)))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
}

// Connect connects to url as c says, named name, with extra options after c's.
func Connect(url, name string, c Config, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append(append(opts, nats.Name(name)), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	return nc, nil
}

// InboxPrefix is the inbox prefix of the client whose nkey is pub: "_INBOX." and pub. The
// server lets each identity subscribe to its own inboxes only, so no client reads the
// replies — JetStream acknowledgements, API answers — meant for another.
func InboxPrefix(pub string) string { return "_INBOX." + pub }

// PublicKey reads the nkey seed in file and returns its public user key ("U…").
func PublicKey(file string) (string, error) {
	seed, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read NATS nkey seed: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", fmt.Errorf("NATS nkey seed %s: %w", file, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("NATS nkey seed %s: %w", file, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("NATS nkey seed %s: not a user seed (SU…)", file)
	}
	return pub, nil
}
