package aggregate

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

// TestRoomFor checks that a batch's row array doubles, once, when the next message may not
// fit, never past the limit unless the message needs it, and stays as it is when it fits.
func TestRoomFor(t *testing.T) {
	for _, c := range []struct {
		name                  string
		len, cap, perMsg, lim int
		wantCap               int
	}{
		{"fits", 100, 1000, 250, 20000, 1000},
		{"exactly fits", 750, 1000, 250, 20000, 1000},
		{"doubles", 900, 1000, 250, 20000, 2000},
		{"doubling capped by the limit", 15000, 16000, 1200, 20000, 20000},
		{"past the limit by one message", 19900, 20000, 300, 20000, 20200},
		{"a message larger than the doubled array", 900, 1000, 5000, 20000, 5900},
		{"empty array, first message", 0, 0, 250, 20000, 250},
		{"unknown message size", 0, 0, 0, 20000, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows := make([]batch.Row, c.len, c.cap)
			got := roomFor(rows, c.perMsg, c.lim)
			if len(got) != c.len {
				t.Fatalf("len = %d, want %d", len(got), c.len)
			}
			if cap(got) != c.wantCap {
				t.Fatalf("cap = %d, want %d", cap(got), c.wantCap)
			}
			if c.cap > 0 && c.cap-c.len >= c.perMsg && &got[:1][0] != &rows[:1][0] {
				t.Fatal("the array was copied although the message fits")
			}
		})
	}
}

func TestRowsCap(t *testing.T) {
	if got := rowsCap(16000); got != 20000 {
		t.Fatalf("rowsCap(16000) = %d, want 20000", got)
	}
}

// TestRecycleClearsWhatDecodingWrote checks that a recycled row array holds no event, however
// take left it: rows it filtered out in place (an impossible row, quarantined, after which
// the good rows moved up) and rows it decoded before a message failed (an event of another
// partition, dead-lettered) lie past the batch's length, and must be cleared too.
func TestRecycleClearsWhatDecodingWrote(t *testing.T) {
	e := newJetStream(t)
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	wk := &worker{a: &Aggregator{cfg: Config{Partitions: testPartitions}, js: e.js, log: log, m: m}, p: 0, log: log}
	wk.free = make(chan []batch.Row, 1)

	// ids of partition 0, then one of partition 1
	var ids []string
	other := ""
	for i := 0; len(ids) < 4 || other == ""; i++ {
		id := fmt.Sprintf("evt_%d", i)
		if stream.PartitionOf("openai", "", id, testPartitions) == 0 {
			ids = append(ids, id)
		} else if other == "" {
			other = id
		}
	}
	bad := row(ids[2], t0, 1)
	bad.Tokens.Output = -1 // impossible: quarantined
	first := []batch.Row{row(ids[0], t0, 1), row(ids[1], t0, 1), bad, row(ids[3], t0, 1)}
	second := []batch.Row{row(ids[0], t0, 1), row(ids[1], t0, 1), row(other, t0, 1)} // fails on its last row
	cons, err := e.js.Consumer(context.Background(), stream.Enriched, stream.AggregatorConsumer(0))
	if err != nil {
		t.Fatal(err)
	}
	take := func(b *pending, rows []batch.Row) {
		t.Helper()
		data, err := batch.Encode(rows)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg(stream.EnrichedSubject(0))
		msg.Data = data
		msg.Header.Set(stream.HeaderSchema, batch.SchemaName)
		if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		got, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range got.Messages() {
			wk.take(b, m)
		}
	}
	empty := func(arr []batch.Row) {
		t.Helper()
		for i, r := range arr[:cap(arr)] {
			if !reflect.ValueOf(r).IsZero() {
				t.Fatalf("recycled row %d of %d holds event %q", i, cap(arr), r.ID)
			}
		}
	}

	b := &pending{rows: make([]batch.Row, 0, 64)}
	take(b, first)
	if len(b.rows) != 3 || b.written != 4 {
		t.Fatalf("after an impossible row: %d rows, %d written; want 3 and 4", len(b.rows), b.written)
	}
	wk.recycle(b)
	arr := <-wk.free
	empty(arr)

	b = &pending{rows: arr}
	take(b, second)
	if len(b.rows) != 0 || b.written != cap(arr) {
		t.Fatalf("after a message of the wrong partition: %d rows, %d written; want 0 and %d", len(b.rows), b.written, cap(arr))
	}
	wk.recycle(b)
	empty(<-wk.free)
}

// BenchmarkRecycle empties a full batch's row array (rowsCap of the default BatchMaxRows)
// after a batch that filled it, and after one that closed on BatchMaxWait with the rows of
// four partitions at 57,000 events/s (the paced benchmark's rate) half a second apart.
func BenchmarkRecycle(b *testing.B) {
	arr := make([]batch.Row, 0, rowsCap(DefaultBatchMaxRows))
	for _, n := range []int{DefaultBatchMaxRows, 7_000} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			wk := &worker{free: make(chan []batch.Row, 1)}
			b.SetBytes(int64(n) * int64(reflect.TypeFor[batch.Row]().Size()))
			for b.Loop() {
				wk.recycle(&pending{rows: arr[:n], written: n})
				arr = <-wk.free
			}
		})
	}
}
