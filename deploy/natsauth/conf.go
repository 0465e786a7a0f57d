package natsauth

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ConfFile is the name of the nats-server configuration WriteConf writes into the
// credentials directory.
const ConfFile = "auth.conf"

// Conf is the authorization block of a nats-server configuration admitting ids, each with
// its role's permissions (Users), for a server configuration to include
// (`include "auth.conf"`). It holds public keys only: no secret.
func Conf(ids []Identity, partitions int) []byte {
	var b bytes.Buffer
	b.WriteString("# tokenmeter's NATS identities (tokenmeter nats init); regenerate, do not edit.\n")
	b.WriteString("# Public keys only; each client's seed is in its own file.\n")
	b.WriteString("authorization {\n  users: [\n")
	for _, id := range ids {
		p := Permissions(id, partitions)
		fmt.Fprintf(&b, "    # %s (%s)\n    {nkey: %s, permissions: {\n", id.Name, id.Role, id.Key)
		fmt.Fprintf(&b, "      publish: {allow: %s", list(p.Publish.Allow))
		if len(p.Publish.Deny) > 0 {
			fmt.Fprintf(&b, ", deny: %s", list(p.Publish.Deny))
		}
		fmt.Fprintf(&b, "}\n      subscribe: {allow: %s}\n    }}\n", list(p.Subscribe.Allow))
	}
	b.WriteString("  ]\n}\n")
	return b.Bytes()
}

func list(subjects []string) string {
	q := make([]string, len(subjects))
	for i, s := range subjects {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// WriteConf writes Conf of the identities in dir to dir/auth.conf (mode 0600, replaced
// whole) and returns its path.
func WriteConf(dir string, partitions int) (string, error) {
	ids, err := Identities(dir)
	if err != nil {
		return "", err
	}
	f := filepath.Join(dir, ConfFile)
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, Conf(ids, partitions), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, f); err != nil {
		return "", fmt.Errorf("replace %s: %w", f, err)
	}
	return f, nil
}
