package standalone

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/tokenmeter/tokenmeter/deploy/natsauth"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
)

// TLS names the PEM files of the embedded NATS listener's TLS. With CAFile set, clients must
// also present a certificate it signed.
type TLS struct {
	CertFile, KeyFile, CAFile string
}

// EmitterPoll is how often the embedded server looks for emitters added to the credentials
// directory.
const EmitterPoll = 2 * time.Second

// stageRoles are the roles whose stages run in the process, each on its own connection.
var stageRoles = []natsauth.Role{natsauth.Collector, natsauth.Enricher, natsauth.Aggregator, natsauth.Alerter, natsauth.Dashboard}

func (p *Pipeline) startNATS() error {
	p.credsDir = p.cfg.NATSCredsDir
	if p.credsDir == "" {
		p.credsDir = filepath.Join(p.cfg.DataDir, "nats", "creds")
	}
	if err := natsauth.Ensure(p.credsDir); err != nil {
		return err
	}
	ids, err := natsauth.Identities(p.credsDir)
	if err != nil {
		return err
	}
	// The process's own identity creates the streams and serves in-process emitters (NATS());
	// its key lives in memory only, so nothing outside the process can use it.
	self, err := nkeys.CreateUser()
	if err != nil {
		return fmt.Errorf("create the pipeline's NATS identity: %w", err)
	}
	selfPub, _ := self.PublicKey()
	opts := &server.Options{
		ServerName: "tokenmeter",
		JetStream:  true,
		StoreDir:   filepath.Join(p.cfg.DataDir, "nats"),
		NoSigs:     true,
		DontListen: p.cfg.NATSAddr == "",
	}
	opts.Nkeys = p.users(ids, selfPub)
	if p.cfg.NATSAddr != "" {
		host, port, _ := net.SplitHostPort(p.cfg.NATSAddr)
		opts.Host = host
		opts.Port, _ = strconv.Atoi(port)
	}
	if t := p.cfg.NATSTLS; t.CertFile != "" {
		opts.TLSConfig, err = server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.CertFile, KeyFile: t.KeyFile, CaFile: t.CAFile, Verify: t.CAFile != ""})
		if err != nil {
			return fmt.Errorf("NATS TLS (certificate %s, key %s, CA %q): %w", t.CertFile, t.KeyFile, t.CAFile, err)
		}
		opts.TLS, opts.TLSVerify = true, t.CAFile != ""
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("configure embedded NATS: %w", err)
	}
	go pprof.Do(context.Background(), pprof.Labels(StageLabel, "nats"), func(context.Context) { ns.Start() })
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("embedded NATS (store %s) not ready within 30s", opts.StoreDir)
	}
	p.ns, p.natsOpts = ns, opts
	// Under the nats label too: the server's side of these in-process connections, and the
	// JetStream streams and consumers they create, run in goroutines started from here.
	pprof.Do(context.Background(), pprof.Labels(StageLabel, "nats"), func(context.Context) {
		p.nc, err = p.connect("tokenmeter", nats.Nkey(selfPub, self.Sign), nats.CustomInboxPrefix(natsconn.InboxPrefix(selfPub)))
		if err != nil {
			return
		}
		p.conns = map[natsauth.Role]*nats.Conn{}
		for _, r := range stageRoles {
			var o []nats.Option
			if o, err = (natsconn.Config{NKeyFile: natsauth.SeedFile(p.credsDir, r)}).Options(); err != nil {
				return
			}
			if p.conns[r], err = p.connect("tokenmeter-"+string(r), o...); err != nil {
				return
			}
		}
	})
	if err != nil {
		p.stopNATS()
		return err
	}
	return nil
}

// users are the server's users: the identities in the credentials directory and the
// process's own, which may do anything.
func (p *Pipeline) users(ids []natsauth.Identity, self string) []*server.NkeyUser {
	return append(natsauth.Users(ids, p.cfg.Partitions), &server.NkeyUser{Nkey: self})
}

// connect opens an in-process connection; a permission the server refuses is logged, since
// it means a role's permissions miss something its stage does.
func (p *Pipeline) connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	log := p.cfg.Logger
	opts = append(opts, nats.InProcessServer(p.ns), nats.Name(name), nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error("NATS", "connection", name, "err", err)
		}))
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded NATS as %s: %w", name, err)
	}
	return nc, nil
}

// watchEmitters admits the emitters added to the credentials directory while the server runs,
// and drops the removed ones, until ctx is done.
func (p *Pipeline) watchEmitters(ctx context.Context) {
	t := time.NewTicker(EmitterPoll)
	defer t.Stop()
	selfUser := p.natsOpts.Nkeys[len(p.natsOpts.Nkeys)-1]
	have := p.natsOpts.Nkeys
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := natsauth.Identities(p.credsDir)
		if err != nil {
			p.cfg.Logger.Warn("read NATS identities", "dir", p.credsDir, "err", err)
			continue
		}
		users := p.users(ids, selfUser.Nkey)
		if slices.EqualFunc(users, have, func(a, b *server.NkeyUser) bool { return a.Nkey == b.Nkey }) {
			continue
		}
		opts := p.natsOpts.Clone()
		opts.Nkeys = users
		if err := p.ns.ReloadOptions(opts); err != nil {
			p.cfg.Logger.Error("admit NATS emitters", "dir", p.credsDir, "err", err)
			continue
		}
		have = users
		p.cfg.Logger.Info("NATS identities reloaded", "dir", p.credsDir, "identities", len(ids))
	}
}

func (p *Pipeline) stopNATS() {
	for _, nc := range p.conns {
		nc.Close()
	}
	if p.nc != nil {
		p.nc.Close()
	}
	if p.ns != nil {
		p.ns.Shutdown()
		p.ns.WaitForShutdown()
	}
}

// NATSAs returns the in-process connection of role r's stage (collector, enricher,
// aggregator, alerter or dashboard), which has only r's permissions.
func (p *Pipeline) NATSAs(r natsauth.Role) *nats.Conn { return p.conns[r] }

// NATSCredsDir is the directory of the NATS identities' seed files.
func (p *Pipeline) NATSCredsDir() string { return p.credsDir }
