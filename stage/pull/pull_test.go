package pull

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// setup starts JetStream with a stream TEST of n messages "m0" … and a durable pull consumer.
func setup(t *testing.T, n int) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	s := natstest.Start(t, t.TempDir(), -1)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TEST", Subjects: []string{"test"}}); err != nil {
		t.Fatal(err)
	}
	publish(t, js, 0, n)
	cons, err := js.CreateConsumer(ctx, "TEST", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	return js, cons
}

func publish(t *testing.T, js jetstream.JetStream, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := js.Publish(context.Background(), "test", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// next runs b.Next, counting items per message, and returns the messages' payloads.
func next(ctx context.Context, b *Batcher, items int) []string {
	var got []string
	b.Next(ctx, func(m jetstream.Msg) int {
		got = append(got, string(m.Data()))
		_ = m.Ack()
		return items
	})
	return got
}

func names(from, to int) []string {
	var s []string
	for i := from; i < to; i++ {
		s = append(s, fmt.Sprintf("m%d", i))
	}
	return s
}

func TestBatchClosesAtMaxItems(t *testing.T) {
	_, cons := setup(t, 5)
	b := &Batcher{Consumer: cons, Stream: "TEST", Log: slog.Default(), MaxItems: 1, MaxWait: time.Minute}
	for i := range 5 {
		if got, want := next(t.Context(), b, 1), names(i, i+1); !slices.Equal(got, want) {
			t.Fatalf("batch %d = %q, want %q", i, got, want)
		}
	}
}

func TestBatchWithoutWaitTakesWhatIsThere(t *testing.T) {
	_, cons := setup(t, 50)
	b := &Batcher{Consumer: cons, Stream: "TEST", Log: slog.Default(), MaxItems: 1000}
	if got, want := next(t.Context(), b, 1), names(0, 50); !slices.Equal(got, want) {
		t.Fatalf("batch = %q, want %q", got, want)
	}
}

func TestBatchWaitsMaxWaitAfterItsFirstMessage(t *testing.T) {
	js, cons := setup(t, 1)
	b := &Batcher{Consumer: cons, Stream: "TEST", Log: slog.Default(), MaxItems: 1000, MaxWait: 2 * time.Second}
	var got []string
	b.Next(t.Context(), func(m jetstream.Msg) int {
		got = append(got, string(m.Data()))
		if len(got) == 1 {
			publish(t, js, 1, 3) // come after the first: the batch waits for them
		}
		return 1
	})
	if want := names(0, 3); !slices.Equal(got, want) {
		t.Fatalf("batch = %q, want %q", got, want)
	}
}

func TestMessagesSetAsideStillEndAnIdleWait(t *testing.T) {
	_, cons := setup(t, 3)
	b := &Batcher{Consumer: cons, Stream: "TEST", Log: slog.Default(), MaxItems: 2}
	// Items 0: every message set aside, so the batch never fills; it still closes.
	if got, want := next(t.Context(), b, 0), names(0, 3); !slices.Equal(got, want) {
		t.Fatalf("batch = %q, want %q", got, want)
	}
}

func TestIdleNextReturnsNothing(t *testing.T) {
	_, cons := setup(t, 0)
	b := &Batcher{Consumer: cons, Stream: "TEST", Log: slog.Default(), MaxItems: 10, IdleWait: 50 * time.Millisecond}
	if got := next(t.Context(), b, 1); len(got) != 0 {
		t.Fatalf("batch = %q, want none", got)
	}
}

func TestFetchErrorsAreLoggedAndRetried(t *testing.T) {
	js, cons := setup(t, 1)
	if err := js.DeleteConsumer(t.Context(), "TEST", "c"); err != nil {
		t.Fatal(err)
	}
	var log testkit.SyncBuffer
	b := &Batcher{Consumer: cons, Stream: "TEST", Log: slog.New(slog.NewTextHandler(&log, nil)), MaxItems: 10}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan []string, 1)
	go func() { got <- next(ctx, b, 1) }()
	testkit.Eventually(t, 10*time.Second, "two failed fetches logged", func() bool {
		return strings.Count(log.String(), "fetch from TEST failed; retrying") >= 2
	})
	cancel()
	if g := <-got; len(g) != 0 {
		t.Fatalf("batch = %q, want none", g)
	}
}
