package ops

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

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
	data, err := os.ReadFile(passwordFile)
	if err != nil {
		return "", fmt.Errorf("read the ClickHouse password: %w", err)
	}
	password := strings.TrimRight(string(data), "\r\n")
	if password == "" {
		return "", fmt.Errorf("ClickHouse password file %s is empty", passwordFile)
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
