// Package cluster_test runs the stages unchanged against a JetStream cluster of three
// in-process nats-servers, with every stream, consumer and KV bucket replicated three times
// (issue 17), and checks ClickHouse against the exact totals of what was accepted — also
// while the stream leader is shut down mid-run and restarted.
package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
	"github.com/tokenmeter/tokenmeter/alerter/alerting"
	"github.com/tokenmeter/tokenmeter/bench/chaos"
	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/collector/collect"
	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/deploy/reconcile"
	"github.com/tokenmeter/tokenmeter/enricher/enrich"
	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

const (
	replicas   = 3
	partitions = stream.DefaultPartitions
	// ackWait is how soon the messages a stage held when its server went away come back.
	ackWait = 3 * time.Second
)

// run is one test's JetStream cluster, stages and ClickHouse database.
type run struct {
	t      *testing.T
	c      *natstest.Cluster
	js     jetstream.JetStream
	conn   driver.Conn
	db     string
	sender *chaos.Sender
	stop   func()
}

// start starts a 3-node cluster and the collector, enricher, aggregator and alerter, each on
// its own connection to the whole cluster, as separate processes would be, with
// -stream-replicas 3.
func start(t *testing.T) *run {
	t.Helper()
	c := natstest.StartCluster(t, 3)
	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	opts := stream.DefaultOptions
	opts.Replicas = replicas
	opts.Partitions = partitions
	opts.MaxBytes = stream.MinMaxBytes
	opts.HistoryMaxBytes = stream.MinMaxBytes
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 4)
	stages := 0
	goStage := func(name string, run func(context.Context) error) {
		stages++
		go func() {
			err := run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
				t.Logf("stage stopped: %v", err)
			}
			errc <- err
		}()
	}

	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	enf := budget.NewEnforcer(nil, log)
	if err := enf.Watch(ctx, js); err != nil {
		t.Fatalf("collector: watch budgets: %v", err)
	}
	col, err := collect.New(collect.Config{
		Partitions: partitions, Streams: opts, Budgets: enf, Registerer: prometheus.NewRegistry(), Logger: log,
	}, nc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	enr, err := enrich.New(enrich.Config{AckWait: ackWait, Streams: opts, Registerer: prometheus.NewRegistry(), Logger: log}, c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	agg, err := aggregate.New(aggregate.Config{
		ClickHouseDSN: chtest.DSN(), Database: db, Partitions: partitions, Streams: opts, AckWait: ackWait,
		Registerer: prometheus.NewRegistry(), Logger: log,
	}, c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	alr, err := alerting.New(alerting.Config{
		ClickHouseDSN: chtest.DSN(), Database: db, Streams: opts, Registerer: prometheus.NewRegistry(), Logger: log,
	}, c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	goStage("collector", func(ctx context.Context) error { return col.Serve(ctx, ln) })
	goStage("enricher", enr.Run)
	goStage("aggregator", agg.Run)
	goStage("alerter", alr.Run)

	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		for range stages {
			if err := <-errc; err != nil {
				t.Errorf("stage stopped with an error: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	r := &run{
		t: t, c: c, js: js, conn: conn, db: db, stop: stop,
		sender: &chaos.Sender{URL: "http://" + ln.Addr().String(), BodyEvents: 500, Clients: 2},
	}
	testkit.Eventually(t, time.Minute, "every stage ready", func() bool {
		return col.Ready() == nil && enr.Ready() == nil && agg.Ready() == nil && alr.Ready() == nil && r.bucketsExist()
	})
	return r
}

// buckets are the KV buckets the stages create: the aggregator's partition leases, the
// alerter's alert state and the budget states the collector enforces.
var buckets = []string{kv.Leases, kv.Alerts, kv.Budgets}

func (r *run) bucketsExist() bool {
	for _, b := range buckets {
		if _, err := r.js.KeyValue(context.Background(), b); err != nil {
			return false
		}
	}
	return true
}

// generator returns a deterministic event stream ending now.
func generator(t *testing.T) *loadgen.Generator {
	cfg := loadgen.DefaultConfig(time.Now().UTC())
	cfg.Seed = uint64(time.Now().UnixNano())
	t.Logf("random seed %d", cfg.Seed)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return loadgen.New(cfg)
}

// checkReplicas checks that every stream, its durable consumers and every KV bucket have
// three replicas, each with a leader.
func (r *run) checkReplicas() {
	r.t.Helper()
	ctx := context.Background()
	names := []string{}
	for _, cfg := range stream.Configs(stream.DefaultOptions) {
		names = append(names, cfg.Name)
	}
	for _, b := range buckets {
		names = append(names, "KV_"+b)
	}
	for _, name := range names {
		s, info := r.stream(name)
		if info.Config.Replicas != replicas || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != replicas-1 {
			r.t.Errorf("stream %s: %d replicas configured, cluster %+v; want %d, a leader and %d followers", name, info.Config.Replicas, info.Cluster, replicas, replicas-1)
		}
		lister := s.ListConsumers(ctx)
		for ci := range lister.Info() {
			if ci.Config.Durable == "" {
				continue // a watch or a replay: ephemeral, one replica by design
			}
			if ci.Cluster == nil || ci.Cluster.Leader == "" || len(ci.Cluster.Replicas) != replicas-1 {
				r.t.Errorf("consumer %s of %s: %d replicas configured, cluster %+v; want a leader and %d followers", ci.Name, name, ci.Config.Replicas, ci.Cluster, replicas-1)
			}
		}
		if err := lister.Err(); err != nil {
			r.t.Fatalf("list consumers of %s: %v", name, err)
		}
	}
}

// stream looks up stream name and its current state.
func (r *run) stream(name string) (jetstream.Stream, *jetstream.StreamInfo) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, name)
	if err != nil {
		r.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.t.Fatalf("stream %s info: %v", name, err)
	}
	return s, info
}

// leader is the index of the server that leads stream name.
func (r *run) leader(name string) int {
	r.t.Helper()
	_, info := r.stream(name)
	if info.Cluster == nil || r.c.Index(info.Cluster.Leader) < 0 {
		r.t.Fatalf("stream %s has no known leader: %+v", name, info.Cluster)
	}
	return r.c.Index(info.Cluster.Leader)
}

// stored is how many rows usage_events holds.
func (r *run) stored() uint64 {
	rows, _, err := chaos.Stored(context.Background(), r.conn, r.db)
	if err != nil {
		return 0 // the aggregator has not created the table yet
	}
	return rows
}

// check waits until the pipeline is idle with every accepted event stored, then compares
// usage_events, spend_1m and spend_1d with the exact expected totals, and reconciles every
// partition.
func (r *run) check(cat *pricing.Catalog) {
	r.t.Helper()
	ctx := context.Background()
	want := chaos.Expect(cat, r.sender.Tally().Events())
	progress := ""
	defer func() {
		if r.t.Failed() {
			r.t.Logf("last seen: %s", progress)
		}
	}()
	testkit.Eventually(r.t, 2*time.Minute, "every accepted event stored, nothing in flight", func() bool {
		busy, err := chaos.Busy(ctx, r.js)
		if err != nil {
			progress = err.Error()
			return false
		}
		rows := r.stored()
		progress = fmt.Sprintf("%d of %d stored; %s", rows, want.Events, busy)
		return rows >= want.Events && busy == ""
	})
	for _, tb := range chaos.Tables {
		got, err := chaos.Measure(ctx, r.conn, r.db, tb.Name)
		if err != nil {
			r.t.Fatal(err)
		}
		if !got.Equal(want) {
			r.t.Errorf("%s:\n got %s\nwant %s", tb.Name, got, want)
		}
	}
	rows, distinct, err := chaos.Stored(ctx, r.conn, r.db)
	if err != nil {
		r.t.Fatal(err)
	}
	lost, doubled := int64(want.Events)-int64(distinct), int64(rows)-int64(distinct)
	if lost != 0 || doubled != 0 {
		r.t.Errorf("lost %d, doubled %d (usage_events holds %d rows, %d distinct ids; %d accepted)", lost, doubled, rows, distinct, want.Events)
	}
	if want.Unpriced == 0 {
		r.t.Errorf("no unpriced event in the traffic; the totals would not cover them")
	}
	parts, err := reconcile.Check(ctx, r.js, r.conn, r.db, partitions)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range parts {
		if !p.OK() || p.UnknownN != 0 {
			r.t.Errorf("reconcile partition %d: %d missing %v, %d doubled %v, %d unknown", p.Partition, p.MissingN, p.Missing, p.DoubledN, p.Doubled, p.UnknownN)
		}
	}
	r.t.Logf("%d events (%d bodies retried): lost %d, doubled %d; totals %s", want.Events, r.sender.Retries(), lost, doubled, want)
}

// catalog is the catalogue the enricher prices with.
func catalog(t *testing.T) *pricing.Catalog {
	t.Helper()
	cat, err := pricing.Default()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// sendSlowly sends n distinct events at 2,000 a second in the background — slowly enough
// that a test's faults fall within the sending — and returns a channel that receives Send's
// result.
func (r *run) sendSlowly(n int) <-chan error {
	r.sender.Rate = 2_000
	sending := make(chan error, 1)
	go func() { sending <- r.sender.Send(context.Background(), generator(r.t), n) }()
	return sending
}

// TestR3Pipeline: the collector, enricher, aggregator and alerter run unchanged against a
// 3-node JetStream cluster; every stream, consumer and KV bucket has three replicas, and
// ClickHouse holds exactly what was accepted.
func TestR3Pipeline(t *testing.T) {
	r, cat := start(t), catalog(t)
	if err := r.sender.Send(context.Background(), generator(t), 10_000); err != nil {
		t.Fatalf("send: %v", err)
	}
	r.check(cat)
	r.checkReplicas()
	r.stop()
}

// TestR3PipelineStreamLeaderRestart shuts down the server that leads USAGE_RAW while events
// are being sent, keeps sending on the two that remain, restarts it, and checks that nothing
// was lost or doubled.
func TestR3PipelineStreamLeaderRestart(t *testing.T) {
	r, cat := start(t), catalog(t)
	sending := r.sendSlowly(20_000)
	testkit.Eventually(t, time.Minute, "a first part of the events stored", func() bool { return r.stored() >= 3_000 })
	down := r.leader(stream.Raw)
	led := []string{}
	for _, name := range []string{stream.Raw, stream.Enriched, stream.History, "KV_" + kv.Leases} {
		if r.leader(name) == down {
			led = append(led, name)
		}
	}
	t.Logf("shutting down s%d, the leader of %v", down, led)
	r.c.Stop(down)
	// The two servers left elect new leaders and the stages carry on through them.
	at := r.stored()
	testkit.Eventually(t, time.Minute, "more events stored without the old leader", func() bool { return r.stored() >= at+3_000 })
	if r.leader(stream.Raw) == down {
		t.Fatalf("s%d still leads %s after its shutdown", down, stream.Raw)
	}
	r.c.Restart(down)
	if err := <-sending; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("send: %v", err)
	}
	r.check(cat)
	r.checkReplicas()
	r.stop()
}
