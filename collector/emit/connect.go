package emit

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage/natsconn"
)

// Connect connects to the pipeline's NATS at url as the service whose nkey seed is in
// seedFile: its own identity, which may publish usage events and nothing else
// (`tokenmeter nats add-emitter NAME` creates one). It keeps reconnecting for ever and starts
// even while NATS is away or does not admit the key yet, so that an emitter on the
// connection buffers meanwhile. seedFile ""
// connects without credentials; opts (TLS: nats.RootCAs, nats.ClientCert) follow.
//
// The seed file's name, without ".nk", is the emitter's name (add-emitter writes NAME.nk): an
// emitter New makes on the connection publishes on that name's subjects, the only ones its
// identity may publish, unless Options.Name says otherwise. A seed kept under another file
// name needs Options.Name.
//
//	nc, err := emit.Connect("nats://127.0.0.1:4222", ".data/nats/creds/emitters/search-api.nk")
//	...
//	em, err := emit.New(nc, emit.Options{})
func Connect(url, seedFile string, opts ...nats.Option) (*nats.Conn, error) {
	name := connName
	if n := strings.TrimSuffix(filepath.Base(seedFile), ".nk"); seedFile != "" && stream.ValidEmitterName(n) {
		name += "/" + n
	}
	return natsconn.Connect(url, name, natsconn.Config{NKeyFile: seedFile},
		append([]nats.Option{nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.IgnoreAuthErrorAbort(), nats.ReconnectWait(time.Second)}, opts...)...)
}

// connName is the NATS connection name of Connect's connections: "tokenmeter-emitter", then
// "/" and the emitter's name when the seed file names one.
const connName = "tokenmeter-emitter"

// nameOf is the emitter's name a connection made by Connect carries, "" for any other.
func nameOf(nc *nats.Conn) string {
	name, ok := strings.CutPrefix(nc.Opts.Name, connName+"/")
	if !ok || !stream.ValidEmitterName(name) {
		return ""
	}
	return name
}
