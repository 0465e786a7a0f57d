package ops

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// SecretFile reads a secret (what names it) from file, without its trailing line break; ""
// for no file. An empty file is an error: a secret that is set must not silently be "".
func SecretFile(what, file string) (string, error) {
	if file == "" {
		return "", nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read the %s: %w", what, err)
	}
	secret := strings.TrimRight(string(data), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("%s file %s is empty", what, file)
	}
	return secret, nil
}

// ClickHouseDSN returns dsn with its password read from passwordFile (the stage commands'
// -clickhouse-password-file, TOKENMETER_CLICKHOUSE_PASSWORD_FILE), so that a deployment keeps
// the password in a secret file (a compose volume, a Kubernetes Secret) rather than in the DSN,
// which sits in environment variables and manifests. An empty passwordFile returns dsn as it is.
// The password is the file's content without its trailing line breaks ("\n", "\r"); an empty
// password, or a DSN that already holds one, is refused, since one of the two would be ignored
// without a word. Errors show the DSN redacted.
func ClickHouseDSN(dsn, passwordFile string) (string, error) {
	if passwordFile == "" {
		return dsn, nil
	}
	password, err := SecretFile("ClickHouse password", passwordFile)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("ClickHouse DSN %q: not a URL with a host, so the password of %s cannot be added to it", redact.DSN(dsn), passwordFile)
	}
	if u.User == nil || u.User.Username() == "" {
		return "", fmt.Errorf("ClickHouse DSN %q names no user for the password of %s", redact.DSN(dsn), passwordFile)
	}
	if _, ok := u.User.Password(); ok {
		return "", fmt.Errorf("ClickHouse DSN %q holds a password and so does %s: keep one", redact.DSN(dsn), passwordFile)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), nil
}
