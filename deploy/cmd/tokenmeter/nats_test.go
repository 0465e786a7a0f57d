package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
)

// TestNATSCommand creates the identities, adds an emitter and checks what is printed and
// written: every seed, and users for all of them in auth.conf.
func TestNATSCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	var out bytes.Buffer
	if err := runNATS([]string{"init", "-dir", dir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, r := range natsauth.Roles {
		if !strings.Contains(out.String(), natsauth.SeedFile(dir, r)+"\n") {
			t.Errorf("init does not print the seed of %s:\n%s", r, out.String())
		}
	}
	out.Reset()
	if err := runNATS([]string{"add-emitter", "-dir", dir, "search-api"}, &out); err != nil {
		t.Fatal(err)
	}
	seed := natsauth.EmitterFile(dir, "search-api")
	if want := "emitter search-api: nkey seed in " + seed + " (mode 0600): give it to the service alone.\n"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("add-emitter printed\n%s\nwant it to begin\n%s", out.String(), want)
	}
	conf, err := os.ReadFile(filepath.Join(dir, natsauth.ConfFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Count(string(conf), "{nkey: "), len(natsauth.Roles)+1; got != want {
		t.Errorf("auth.conf holds %d users, want %d", got, want)
	}
	if !strings.Contains(string(conf), "# search-api (emitter)") {
		t.Errorf("auth.conf has no user for the emitter search-api")
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"add-emitter", "-dir", dir, "search-api"}, "file exists"},
		{[]string{"add-emitter", "-dir", dir, "Search API"}, `emitter name "Search API"`},
		{[]string{"add-emitter", "-dir", dir}, "want: nats add-emitter [-dir DIR] NAME"},
		{[]string{"init", "-dir", dir, "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"rotate"}, "want: nats init"},
	} {
		if err := runNATS(c.args, &out); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("nats %q: err %v, want %q", c.args, err, c.want)
		}
	}
}
