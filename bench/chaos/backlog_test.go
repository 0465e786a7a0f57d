//go:build chaos

package chaos

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// Scenario 16: the aggregator is down while traffic goes on, with the working streams at
// their smallest size (64 MiB). USAGE_ENRICHED fills with the backlog, the enricher cannot
// publish and leaves its messages in USAGE_RAW, which fills too, and the collector answers
// 429; the clients retry. Once the aggregator is back the backlog drains, every refused body
// is accepted, and every table is exact: a full stream meant "a consumer is down", and
// nothing it refused was lost.
func TestBacklogFillsAndDrains(t *testing.T) {
	const size = stream.MinMaxBytes
	r := newRun(t, "", nil, func(c *Config) {
		c.Env = append(c.Env, "TOKENMETER_STREAM_MAX_BYTES="+strconv.Itoa(size))
	})
	if err := r.c.Stop(Aggregator); err != nil {
		t.Fatal(err)
	}
	// Batches are compressed, their repeating strings in dictionaries: about 74 bytes an
	// event in USAGE_ENRICHED and 64 in USAGE_RAW, so the two streams hold about 1,950,000
	// events; 2,400,000 are more.
	const events = 2_400_000
	sending := r.sendInBackground(generator(116, nil), events)
	waitFor(t, "the collector to refuse bodies", func() bool { return r.sender.Retries() >= 10 })
	raw, enriched := streamState(t, r.js, stream.Raw).Bytes, streamState(t, r.js, stream.Enriched).Bytes
	if raw > size || enriched > size || enriched < size*9/10 {
		t.Fatalf("while refusing: USAGE_RAW holds %d bytes, USAGE_ENRICHED %d; want both within %d, USAGE_ENRICHED nearly full", raw, enriched, size)
	}
	if _, err := r.c.StartProc(t.Context(), Aggregator); err != nil {
		t.Fatal(err)
	}
	if err := <-sending; err != nil {
		t.Fatal(err)
	}
	r.check("16. aggregator down with 64 MiB streams: backlog fills USAGE_ENRICHED, then USAGE_RAW; 429 until it is back",
		fmt.Sprintf("streams full (USAGE_RAW %d MiB, USAGE_ENRICHED %d MiB); %d bodies refused with 429 and retried",
			raw>>20, enriched>>20, r.sender.Retries()))
}
