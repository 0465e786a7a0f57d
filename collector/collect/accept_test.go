package collect

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/schemas/stream/streamtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

func TestAccept(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	js := streamtest.Streams(t, nc, nil)
	c := newCollector(t, nc, Config{})
	in := []event.Usage{
		{ID: "evt-1", Provider: "openai", Model: "gpt-4o", Usage: event.Tokens{Input: 10, Output: 2}, Tags: map[string]string{"team": "search"}},
		{ID: "evt-2", Provider: "openai", Usage: event.Tokens{Input: 1}},
		{ID: "evt-3", Time: testNow.Add(-time.Hour), Provider: "anthropic", Model: "claude-sonnet-4-5", ServiceTier: "batch"},
	}
	before := in[0]
	rejected, err := c.Accept(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if want := []event.Rejection{{Index: 1, ID: "evt-2", Error: "model: is required"}}; !reflect.DeepEqual(rejected, want) {
		t.Errorf("rejected = %+v, want %+v", rejected, want)
	}
	if !reflect.DeepEqual(in[0], before) {
		t.Errorf("Accept modified its input: %+v", in[0])
	}
	var got []batch.Row
	for _, m := range streamtest.Messages(t, js, stream.Raw) {
		got = append(got, m.Rows...)
	}
	want := map[string]batch.Row{}
	for _, u := range []event.Usage{in[0], in[2]} {
		u.Normalize(testNow)
		want[u.ID] = batch.FromUsage(&u, testNow, stream.Partition(u.ID, stream.DefaultPartitions))
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], want[got[0].ID]) || !reflect.DeepEqual(got[1], want[got[1].ID]) {
		t.Fatalf("stored %+v\nwant %+v", got, want)
	}
	// Nothing valid: nothing published, no error.
	if rejected, err := c.Accept(context.Background(), in[1:2]); err != nil || len(rejected) != 1 {
		t.Errorf("only invalid events: %v, %v", rejected, err)
	}
}

func TestAcceptPublishErrors(t *testing.T) {
	s := natstest.Start(t, t.TempDir(), -1)
	nc := natstest.Connect(t, s)
	streamtest.Streams(t, nc, func(cfg *jetstream.StreamConfig) { cfg.MaxBytes = 100 })
	c := newCollector(t, nc, Config{PublishTimeout: 500 * time.Millisecond})
	evs := []event.Usage{{ID: "evt-1", Provider: "openai", Model: "gpt-4o"}}
	_, err := c.Accept(context.Background(), evs)
	var perr *PublishError
	if !errors.As(err, &perr) || perr.HTTPStatus() != http.StatusTooManyRequests || perr.RetryAfterSeconds() != "1" || !errors.Is(err, errFull) {
		t.Fatalf("full stream: %v", err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	_, err = c.Accept(context.Background(), evs)
	if !errors.As(err, &perr) || perr.HTTPStatus() != http.StatusServiceUnavailable || perr.RetryAfterSeconds() != "5" {
		t.Fatalf("NATS down: %v", err)
	}
}
