package cluster_test

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/aggregator/lease"
	alertbudget "github.com/tokenmeter/tokenmeter/alerter/budget"
	"github.com/tokenmeter/tokenmeter/alerter/state"
	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
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

// TestBucketsFollowStreamReplicas: on a cluster whose streams have three replicas, the KV
// buckets the stages open (partition leases, alert state, budget states) get three too, and
// reopening them from stages started with the single-machine defaults keeps three.
func TestBucketsFollowStreamReplicas(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the budget watches
	three := stream.DefaultOptions
	three.Replicas = 3
	three.MaxBytes = stream.MinMaxBytes
	if err := stream.Ensure(ctx, js, three); err != nil {
		t.Fatal(err)
	}
	open := func() {
		t.Helper()
		if _, _, err := lease.Open(ctx, js, lease.DefaultTTL); err != nil {
			t.Fatal(err)
		}
		if _, err := state.Open(ctx, js, jetstream.FileStorage); err != nil {
			t.Fatal(err)
		}
		if _, err := alertbudget.OpenPublisher(ctx, js, jetstream.FileStorage); err != nil {
			t.Fatal(err)
		}
		if err := budget.NewEnforcer(nil, nil).Watch(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		for _, b := range buckets {
			s, err := js.Stream(ctx, "KV_"+b)
			if err != nil {
				t.Fatalf("bucket %s: %v", b, err)
			}
			if got := s.CachedInfo().Config.Replicas; got != 3 {
				t.Errorf("bucket %s has %d replicas %s, want 3", b, got, when)
			}
		}
	}
	open()
	check("when created")
	one := stream.DefaultOptions
	one.MaxBytes = stream.MinMaxBytes
	if err := stream.Ensure(ctx, js, one); err != nil {
		t.Fatal(err)
	}
	open()
	check("after stages with one replica opened them")
}
