package enrich

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// TestWorkersAcknowledgeInStreamOrder watches the acknowledgements two workers send for a
// backlog of raw messages: in stream order, so that JetStream deletes USAGE_RAW's messages from
// the front and never rewrites a half-deleted block (see turns).
func TestWorkersAcknowledgeInStreamOrder(t *testing.T) {
	nc, js := startJetStream(t)
	const n = 300
	at := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		data, err := batch.Encode([]batch.Row{{ID: fmt.Sprintf("e%d", i), Time: at, Received: at, Partition: i % 4,
			Provider: "openai", Model: "gpt-4o", ServiceTier: "standard"}})
		if err != nil {
			t.Fatal(err)
		}
		publishRaw(t, js, i%4, data, batch.SchemaName)
	}

	// An acknowledgement is a message on the acknowledged message's reply subject, which names
	// its stream sequence: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.… (or, in the
	// newer form, with the domain and account before the stream).
	acks := make(chan uint64, 2*n)
	sub, err := nc.Subscribe("$JS.ACK.>", func(m *nats.Msg) {
		tok := strings.Split(m.Subject, ".")
		i := 5
		if len(tok) > 9 {
			i = 7
		}
		if tok[i-3] != stream.Raw || tok[i-2] != ConsumerName {
			return
		}
		seq, err := strconv.ParseUint(tok[i], 10, 64)
		if err != nil {
			t.Errorf("ack subject %s: %v", m.Subject, err)
		}
		acks <- seq
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	runEnricher(t, nc, Config{Workers: 2, FetchBatch: 8, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	timeout := time.After(30 * time.Second)
	for want := uint64(1); want <= n; want++ {
		select {
		case got := <-acks:
			if got != want {
				t.Fatalf("acknowledgement %d is of stream sequence %d, want %d", want, got, want)
			}
		case <-timeout:
			t.Fatalf("%d of %d raw messages acknowledged after 30 s", want-1, n)
		}
	}
}
