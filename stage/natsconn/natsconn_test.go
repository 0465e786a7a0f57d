package natsconn_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/tokenmeter/tokenmeter/stage/natsconn"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// TestTLSAndNKey connects to a server that requires both a client certificate its CA signed
// and a known nkey.
func TestTLSAndNKey(t *testing.T) {
	dir := t.TempDir()
	p := natstest.NewPKI(t, dir)
	ca, sCert, sKey, cCert, cKey := p.CA, p.ServerCert, p.ServerKey, p.ClientCert, p.ClientKey
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	seedFile := filepath.Join(dir, "client.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: sCert, KeyFile: sKey, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TLSConfig: tlsCfg, TLS: true, TLSVerify: true, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready after 10s")
	}
	t.Cleanup(s.Shutdown)
	url := "tls://" + s.Addr().String()

	full := natsconn.Config{NKeyFile: seedFile, CAFile: ca, CertFile: cCert, KeyFile: cKey}
	nc, err := natsconn.Connect(url, "test", full)
	if err != nil {
		t.Fatalf("connect with key and certificate: %v", err)
	}
	if got, want := nc.Opts.InboxPrefix, "_INBOX."+pub; got != want {
		t.Errorf("inbox prefix %q, want %q", got, want)
	}
	nc.Close()
	for name, c := range map[string]natsconn.Config{
		"no client certificate": {NKeyFile: seedFile, CAFile: ca},
		"no nkey":               {CAFile: ca, CertFile: cCert, KeyFile: cKey},
		"no TLS":                {NKeyFile: seedFile},
	} {
		u := url
		if c.CAFile == "" {
			u = "nats://" + s.Addr().String()
		}
		if nc, err := natsconn.Connect(u, "test", c, nats.NoReconnect()); err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	notSeed := filepath.Join(dir, "not-a-seed")
	if err := os.WriteFile(notSeed, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(c natsconn.Config, want string) {
		t.Helper()
		err := c.Validate()
		if got := ""; err != nil {
			got = err.Error()
			if got != want {
				t.Errorf("Validate(%+v) = %q, want %q", c, got, want)
			}
		} else if want != "" {
			t.Errorf("Validate(%+v) = nil, want %q", c, want)
		}
	}
	f(natsconn.Config{}, "")
	f(natsconn.Config{NKeyFile: filepath.Join(dir, "missing.nk")}, "read NATS nkey seed: open "+filepath.Join(dir, "missing.nk")+": no such file or directory")
	f(natsconn.Config{NKeyFile: notSeed}, "NATS nkey seed "+notSeed+": illegal base32 data at input byte 0")
	f(natsconn.Config{CertFile: "c.pem"}, "NATS client certificate \"c.pem\" and key \"\": set both or neither\nNATS TLS file: stat c.pem: no such file or directory")
}
