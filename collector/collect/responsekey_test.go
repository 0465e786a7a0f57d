package collect

import (
	"context"
	"fmt"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// Two reports of one provider call under different event ids are published to the partition
// of the response (stream.PartitionOf), so that the aggregator's writer of that partition sees
// both; events without a response id stay on the partition of their id.
func TestEventsAreRoutedByResponse(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{})
	// Ids whose partitions by id alone differ, reporting one response.
	var ids []string
	for i := 0; len(ids) < 2; i++ {
		id := fmt.Sprintf("evt-%d", i)
		if len(ids) == 0 || stream.Partition(id, stream.DefaultPartitions) != stream.Partition(ids[0], stream.DefaultPartitions) {
			ids = append(ids, id)
		}
	}
	mk := func(id, provider, rid string) event.Usage {
		return event.Usage{ID: id, Provider: provider, Model: "gpt-4o", ResponseID: rid, Usage: event.Tokens{Input: 10, Output: 2}}
	}
	in := []event.Usage{
		mk(ids[0], "openai", "chatcmpl-1"),
		mk(ids[1], "OpenAI", "chatcmpl-1"),
		mk("plain-1", "openai", ""),
	}
	if rejected, err := c.Accept(context.Background(), in); err != nil || len(rejected) != 0 {
		t.Fatalf("Accept = %v, %v", rejected, err)
	}
	want := map[string]int{
		ids[0]:    stream.PartitionOf("openai", "chatcmpl-1", "", stream.DefaultPartitions),
		ids[1]:    stream.PartitionOf("openai", "chatcmpl-1", "", stream.DefaultPartitions),
		"plain-1": stream.Partition("plain-1", stream.DefaultPartitions),
	}
	got := map[string]int{}
	for _, m := range streamtest.Messages(t, js, stream.Raw) {
		for _, r := range m.Rows {
			if m.Subject != stream.RawSubject(r.Partition) {
				t.Errorf("event %s with partition %d is on %s", r.ID, r.Partition, m.Subject)
			}
			got[r.ID] = r.Partition
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("partitions = %v, want %v", got, want)
	}
}
