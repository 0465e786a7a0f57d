package natsauth_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
)

// TestConfMatchesUsers checks that the configuration written for a nats-server gives it the
// same users, with the same permissions, as the embedded server of tokenmeter run.
func TestConfMatchesUsers(t *testing.T) {
	dir := t.TempDir()
	if err := natsauth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.AddEmitter(dir, "billing"); err != nil {
		t.Fatal(err)
	}
	conf, err := natsauth.WriteConf(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat %s: %v, %v", conf, fi, err)
	}
	// The server's own configuration beside it, as in a deployment.
	main := filepath.Join(filepath.Dir(conf), "nats.conf")
	if err := os.WriteFile(main, []byte("port: -1\ninclude \""+natsauth.ConfFile+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(main)
	if err != nil {
		t.Fatalf("nats-server reads %s: %v", conf, err)
	}
	ids, err := natsauth.Identities(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := natsauth.Users(ids, 4)
	if len(opts.Nkeys) != len(want) {
		t.Fatalf("%d users, want %d", len(opts.Nkeys), len(want))
	}
	for i, u := range opts.Nkeys {
		if u.Nkey != want[i].Nkey || !reflect.DeepEqual(u.Permissions, want[i].Permissions) {
			t.Errorf("user %d (%s): %s %+v %+v, want %s %+v %+v", i, ids[i].Name, u.Nkey, u.Permissions.Publish, u.Permissions.Subscribe,
				want[i].Nkey, want[i].Permissions.Publish, want[i].Permissions.Subscribe)
		}
	}
}
