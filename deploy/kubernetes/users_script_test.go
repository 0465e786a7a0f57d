package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// usersXML is what clickhouse-users.sh writes that ClickHouse acts on.
type usersXML struct {
	Profiles struct {
		Writer struct {
			Readonly string `xml:"readonly"`
		} `xml:"tokenmeter_writer"`
		Reader struct {
			Readonly string `xml:"readonly"`
		} `xml:"tokenmeter_reader"`
	} `xml:"profiles"`
	Users struct {
		Default struct {
			Networks struct {
				Replace string   `xml:"replace,attr"`
				IP      []string `xml:"ip"`
			} `xml:"networks"`
			Password *string `xml:"password"`
		} `xml:"default"`
		Writer user `xml:"tokenmeter_writer"`
		Reader user `xml:"tokenmeter_reader"`
	} `xml:"users"`
}

type user struct {
	SHA256  string   `xml:"password_sha256_hex"`
	Profile string   `xml:"profile"`
	Grants  []string `xml:"grants>query"`
}

// runUsers runs clickhouse-users.sh with args and returns its combined output.
func runUsers(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("bash", append([]string{"clickhouse-users.sh"}, args...)...).CombinedOutput()
	return string(out), err
}

func readUsers(t *testing.T, file string) usersXML {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var u usersXML
	if err := xml.Unmarshal(data, &u); err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return u
}

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// TestClickHouseUsersScriptGenerates runs the script as compose does: it creates each missing
// password (mode 0400, owned by its reader's user when run as root), keeps them on the next
// run, and writes users whose passwords are those files' SHA-256 and whose grants are the
// least the stages need.
func TestClickHouseUsersScriptGenerates(t *testing.T) {
	dir := t.TempDir()
	writer, reader, users := filepath.Join(dir, "w", "writer.password"), filepath.Join(dir, "r", "reader.password"), filepath.Join(dir, "u", "tokenmeter.xml")
	if out, err := runUsers(t, "-generate", writer, reader, users); err != nil {
		t.Fatalf("clickhouse-users.sh -generate: %v\n%s", err, out)
	}
	passwords := map[string]string{}
	for file, uid := range map[string]uint32{writer: 65532, reader: 472} {
		st, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o400 {
			t.Errorf("%s: mode %v, want 0400", file, st.Mode().Perm())
		}
		if got := st.Sys().(*syscall.Stat_t).Uid; os.Geteuid() == 0 && got != uid {
			t.Errorf("%s: owner %d, want %d", file, got, uid)
		}
		data, _ := os.ReadFile(file)
		if len(data) < 20 || strings.ContainsAny(string(data), "\n/+=") {
			t.Errorf("%s holds %q, want 20 or more letters and digits", file, data)
		}
		passwords[file] = string(data)
	}
	if passwords[writer] == passwords[reader] {
		t.Error("the writer and the reader have the same password")
	}

	u := readUsers(t, users)
	if u.Users.Writer.SHA256 != sha(passwords[writer]) || u.Users.Reader.SHA256 != sha(passwords[reader]) {
		t.Errorf("users: writer SHA-256 %s, reader %s; want those of the password files", u.Users.Writer.SHA256, u.Users.Reader.SHA256)
	}
	if got, want := strings.Join(u.Users.Writer.Grants, "; "), "GRANT CREATE DATABASE, CREATE TABLE, CREATE VIEW, ALTER, DROP TABLE, DROP VIEW, INSERT, SELECT ON tokenmeter.*; GRANT SELECT ON system.processes"; got != want {
		t.Errorf("writer grants %q, want %q", got, want)
	}
	if got := strings.Join(u.Users.Reader.Grants, "; "); got != "GRANT SELECT ON tokenmeter.*" {
		t.Errorf("reader grants %q, want GRANT SELECT ON tokenmeter.*", got)
	}
	if u.Users.Writer.Profile != "tokenmeter_writer" || u.Users.Reader.Profile != "tokenmeter_reader" ||
		u.Profiles.Reader.Readonly != "2" || u.Profiles.Writer.Readonly != "" {
		t.Errorf("profiles: writer %q (readonly %q), reader %q (readonly %q); want tokenmeter_writer (none), tokenmeter_reader (2)",
			u.Users.Writer.Profile, u.Profiles.Writer.Readonly, u.Users.Reader.Profile, u.Profiles.Reader.Readonly)
	}
	if n := u.Users.Default.Networks; n.Replace != "replace" || strings.Join(n.IP, " ") != "::1 127.0.0.1" || u.Users.Default.Password != nil {
		t.Errorf("default: networks %+v, password %v; want its networks replaced by ::1 127.0.0.1 and its password untouched", n, u.Users.Default.Password)
	}
	if data, _ := os.ReadFile(users); strings.Contains(string(data), passwords[writer]) || strings.Contains(string(data), passwords[reader]) {
		t.Errorf("%s holds a password", users)
	}

	if out, err := runUsers(t, "-generate", writer, reader, users); err != nil {
		t.Fatalf("clickhouse-users.sh -generate, again: %v\n%s", err, out)
	}
	for file, want := range passwords {
		if data, _ := os.ReadFile(file); string(data) != want {
			t.Errorf("%s changed on the second run: %q, want %q", file, data, want)
		}
	}
	if again := readUsers(t, users); !reflect.DeepEqual(again, u) {
		t.Errorf("users changed on the second run: %+v, want %+v", again, u)
	}
}

// TestClickHouseUsersScriptSecret runs the script as Kubernetes does: the passwords are the
// Secret's files, trailing line breaks (kubectl create secret --from-file) not part of them, and
// a missing one is an error rather than a generated password nobody else knows.
func TestClickHouseUsersScriptSecret(t *testing.T) {
	dir := t.TempDir()
	writer, reader, users := filepath.Join(dir, "writer.password"), filepath.Join(dir, "reader.password"), filepath.Join(dir, "users.d", "tokenmeter.xml")
	if err := os.WriteFile(writer, []byte("w-secret\r\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if out, err := runUsers(t, writer, reader, users); err == nil || !strings.Contains(out, "no password in "+reader) {
		t.Errorf("without the reader's password: %v, %q; want an error naming %s", err, out, reader)
	}
	if err := os.WriteFile(reader, []byte("\r\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if out, err := runUsers(t, writer, reader, users); err == nil || !strings.Contains(out, "no password in "+reader) {
		t.Errorf("with a reader's password of line breaks alone: %v, %q; want an error naming %s", err, out, reader)
	}
	if err := os.Remove(reader); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(users); !os.IsNotExist(err) {
		t.Errorf("users written without the reader's password: %v", err)
	}
	if err := os.WriteFile(reader, []byte("r-secret"), 0o400); err != nil {
		t.Fatal(err)
	}
	if out, err := runUsers(t, writer, reader, users); err != nil {
		t.Fatalf("clickhouse-users.sh: %v\n%s", err, out)
	}
	u := readUsers(t, users)
	if u.Users.Writer.SHA256 != sha("w-secret") || u.Users.Reader.SHA256 != sha("r-secret") {
		t.Errorf("users: writer SHA-256 %s, reader %s; want those of w-secret and r-secret", u.Users.Writer.SHA256, u.Users.Reader.SHA256)
	}
	if out, err := runUsers(t, writer, reader); err == nil || !strings.HasPrefix(out, "usage: ") {
		t.Errorf("with two arguments: %v, %q; want the usage", err, out)
	}
}
