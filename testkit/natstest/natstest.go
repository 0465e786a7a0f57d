// Package natstest runs embedded NATS JetStream servers, alone or as a cluster, for tests.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Start runs a JetStream server on 127.0.0.1 storing in dir. Port -1 picks a free port; pass
// a previous server's Port to restart it on the same address. The server is shut down when
// the test ends.
func Start(tb testing.TB, dir string, port int) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		tb.Fatalf("new NATS server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("the NATS server is not ready after 10s")
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// Port is the TCP port s listens on.
func Port(tb testing.TB, s *server.Server) int {
	tb.Helper()
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		tb.Fatalf("the NATS server listens on %v, not TCP", s.Addr())
	}
	return addr.Port
}

// Connect connects to s, reconnecting for ever every 20 ms, and closes the connection when
// the test ends.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		tb.Fatalf("connect to NATS: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
