package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a JetStream cluster of in-process servers on 127.0.0.1, each with its own file
// store. A server stopped with Stop comes back with Restart on the same ports and store, as a
// restarted machine does.
type Cluster struct {
	tb      testing.TB
	opts    []*server.Options
	servers []*server.Server
}

// StartCluster starts a JetStream cluster of n servers, named s0, s1, …, and returns once
// it has a meta leader. The servers are shut down when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	clientPorts, routePorts := freePorts(tb, n), freePorts(tb, n)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	c := &Cluster{tb: tb, servers: make([]*server.Server, n)}
	for i := range n {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: clientPorts[i], NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: tb.TempDir(),
			Cluster: server.ClusterOpts{Name: "tokenmeter", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
	}
	for i := range n {
		c.start(i)
	}
	tb.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	for i, s := range c.servers {
		if !s.ReadyForConnections(20 * time.Second) {
			tb.Fatalf("NATS server s%d is not ready after 20s", i)
		}
	}
	c.awaitJetStream(0)
	return c
}

func (c *Cluster) start(i int) {
	c.tb.Helper()
	s, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		c.tb.Fatalf("new NATS server s%d: %v", i, err)
	}
	go s.Start()
	c.servers[i] = s
}

// awaitJetStream waits until server i answers JetStream requests: the cluster has a meta
// leader and i has caught up with it.
func (c *Cluster) awaitJetStream(i int) {
	c.tb.Helper()
	nc, err := nats.Connect(c.servers[i].ClientURL())
	if err != nil {
		c.tb.Fatalf("connect to NATS server s%d: %v", i, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.tb.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("JetStream on s%d does not answer after 30s: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// URL lists every server's client URL, comma-separated, as nats.Connect takes them.
func (c *Cluster) URL() string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

// Size is the number of servers.
func (c *Cluster) Size() int { return len(c.opts) }

// Index returns the index of the server named name (s0, s1, …), or -1.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// Stop shuts server i down and waits until it is gone.
func (c *Cluster) Stop(i int) {
	c.tb.Helper()
	s := c.servers[i]
	if s == nil {
		c.tb.Fatalf("stop NATS server s%d: not running", i)
	}
	s.Shutdown()
	s.WaitForShutdown()
	c.servers[i] = nil
}

// Restart starts the stopped server i again on its ports and file store, and waits until it
// serves JetStream.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if c.servers[i] != nil {
		c.tb.Fatalf("restart NATS server s%d: still running", i)
	}
	c.start(i)
	if !c.servers[i].ReadyForConnections(20 * time.Second) {
		c.tb.Fatalf("NATS server s%d is not ready 20s after its restart", i)
	}
	c.awaitJetStream(i)
}

// Connect connects to the whole cluster, reconnecting for ever every 20 ms to whichever
// server answers, and closes the connection when the test ends.
func (c *Cluster) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		tb.Fatalf("connect to the NATS cluster: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// freePorts returns n TCP ports of 127.0.0.1 that were free a moment ago.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("find a free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
