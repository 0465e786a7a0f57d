package emit

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenmeter/tokenmeter/schemas/natsconn"
)

// Connect connects to the pipeline's NATS at url as the service whose nkey seed is in
// seedFile: its own identity, which may publish usage events and nothing else
// (`tokenmeter nats add-emitter NAME` creates one). It keeps reconnecting for ever and starts
// even while NATS is away or does not admit the key yet, so that an emitter on the
// connection buffers meanwhile. seedFile ""
// connects without credentials; opts (TLS: nats.RootCAs, nats.ClientCert) follow.
//
//	nc, err := emit.Connect("nats://127.0.0.1:4222", ".data/nats/creds/emitters/search-api.nk")
//	...
//	em, err := emit.New(nc, emit.Options{})
func Connect(url, seedFile string, opts ...nats.Option) (*nats.Conn, error) {
	return natsconn.Connect(url, "tokenmeter-emitter", natsconn.Config{NKeyFile: seedFile},
		append([]nats.Option{nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.IgnoreAuthErrorAbort(), nats.ReconnectWait(time.Second)}, opts...)...)
}
