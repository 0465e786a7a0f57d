package cluster_test

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/natstest"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// TestConcurrentEnsure: four stages starting at once on a 3-node cluster each ensure the R3
// streams; every one succeeds (nats-server leaves concurrent creations of one stream
// unanswered, and Ensure starts over), and the streams have three replicas.
func TestConcurrentEnsure(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	o := stream.DefaultOptions
	o.Replicas = 3
	o.MaxBytes = stream.MinMaxBytes
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		js, err := jetstream.New(c.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { errs[i] = stream.Ensure(context.Background(), js, o) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("stage %d: Ensure error = %v", i, err)
		}
	}
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range stream.Configs(o) {
		s, err := js.Stream(context.Background(), cfg.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", cfg.Name, err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Errorf("%s has %d replicas, want 3", cfg.Name, got)
		}
	}
}
