package stream

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestParseRawSubject(t *testing.T) {
	f := func(subject string, wantP int, wantEmitter string) {
		t.Helper()
		p, emitter, err := ParseRawSubject(subject)
		if err != nil || p != wantP || emitter != wantEmitter {
			t.Errorf("ParseRawSubject(%q) = %d, %q, %v; want %d, %q", subject, p, emitter, err, wantP, wantEmitter)
		}
	}
	f("usage.raw.0", 0, "")
	f("usage.raw.3", 3, "")
	f("usage.raw.65535", 65535, "")
	f(EmitterRawSubject(2, "billing"), 2, "billing")
	f("usage.raw.0.search-api_2", 0, "search-api_2")
	f(EmitterRawSubject(1, ""), 1, "")

	for _, bad := range []string{
		"usage.raw.", "usage.raw.x", "usage.raw.-1", "usage.raw.65536", "usage.raw.01", "usage.raw.+1",
		"usage.raw.0.", "usage.raw.0.Billing", "usage.raw.0.a.b", "usage.raw.0._x", "usage.raw.0.-x",
		"usage.raw.0." + strings.Repeat("a", 65), "usage.enriched.0", "outcomes.raw", "",
	} {
		if p, emitter, err := ParseRawSubject(bad); err == nil {
			t.Errorf("ParseRawSubject(%q) = %d, %q; want an error", bad, p, emitter)
		}
	}
	_, _, err := ParseRawSubject("usage.raw.0.a.b")
	if want := `subject "usage.raw.0.a.b" is not usage.raw.<partition> nor usage.raw.<partition>.<emitter>`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
	if got := EmitterRawSubject(3, "billing"); got != "usage.raw.3.billing" {
		t.Errorf("EmitterRawSubject(3, billing) = %q, want usage.raw.3.billing", got)
	}
}

func TestValidEmitterName(t *testing.T) {
	for name, want := range map[string]bool{
		"billing": true, "search-api": true, "a_1": true, "0": true, strings.Repeat("a", 64): true,
		"": false, strings.Repeat("a", 65): false, "-a": false, "_a": false, "Billing": false,
		"a.b": false, "a*": false, ">": false, "a b": false, "../x": false, "é": false,
	} {
		if got := ValidEmitterName(name); got != want {
			t.Errorf("ValidEmitterName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzParseRawSubject checks that whatever subject is parsed, what is accepted names the same
// subject again.
func FuzzParseRawSubject(f *testing.F) {
	for _, s := range []string{"usage.raw.0", "usage.raw.3.billing", "usage.raw.0.a.b", "usage.raw.01", "usage.raw.99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		p, emitter, err := ParseRawSubject(subject)
		if err != nil {
			return
		}
		if got := EmitterRawSubject(p, emitter); got != subject {
			t.Fatalf("ParseRawSubject(%q) = %d, %q, which names %q", subject, p, emitter, got)
		}
	})
}

// TestEnsureWidensRawSubjects starts from the layout before emitter subjects — USAGE_RAW on
// usage.raw.* under interest retention, with a backlog — and checks that Ensure widens its
// subjects in place, keeping the backlog, and that an emitter's message is then stored,
// handed to the enricher's consumer once the enricher widened its filter, and copied into
// USAGE_HISTORY under its own subject.
func TestEnsureWidensRawSubjects(t *testing.T) {
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: Raw, Subjects: []string{RawPrefix + "*"},
		Retention: jetstream.InterestPolicy, Discard: jetstream.DiscardNew, MaxBytes: 64 << 20, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, Raw, jetstream.ConsumerConfig{Durable: EnricherConsumer, FilterSubject: RawPrefix + "*", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := js.Publish(ctx, RawSubject(i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, EmitterRawSubject(0, "billing"), []byte("early")); err == nil {
		t.Fatal("publish to usage.raw.0.billing before Ensure: stored, want no stream")
	}

	o := DefaultOptions
	o.MaxBytes = 64 << 20
	if err := Ensure(ctx, js, o); err != nil {
		t.Fatalf("Ensure() over usage.raw.*: %v", err)
	}
	raw := streamInfo(t, js, Raw)
	if got := fmt.Sprint(raw.Config.Subjects); got != "[usage.raw.>]" || raw.State.Msgs != 2 || raw.State.FirstSeq != 1 {
		t.Fatalf("USAGE_RAW after Ensure: subjects %s, %d messages from %d; want [usage.raw.>], 2 from 1", got, raw.State.Msgs, raw.State.FirstSeq)
	}
	// The enricher's consumer is its own to configure: Ensure keeps it, the enricher widens it.
	cons, err := js.CreateOrUpdateConsumer(ctx, Raw, jetstream.ConsumerConfig{Durable: EnricherConsumer, FilterSubject: RawSubjects, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("widen the enricher's filter: %v", err)
	}
	if _, err := js.Publish(ctx, EmitterRawSubject(0, "billing"), []byte("billing")); err != nil {
		t.Fatalf("publish to usage.raw.0.billing after Ensure: %v", err)
	}
	b, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range b.Messages() {
		got = append(got, fmt.Sprintf("%s=%q", m.Subject(), m.Data()))
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if want := `[usage.raw.0="\x00" usage.raw.1="\x01" usage.raw.0.billing="billing"]`; fmt.Sprint(got) != want {
		t.Fatalf("the enricher reads %v, want %s", got, want)
	}
	waitFor(t, "the copies in USAGE_HISTORY", func() bool { return streamInfo(t, js, History).State.Msgs == 3 })
	hs, err := js.Stream(ctx, History)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hs.GetMsg(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "usage.raw.0.billing" || string(m.Data) != "billing" {
		t.Fatalf("USAGE_HISTORY's copy: %s %q, want usage.raw.0.billing \"billing\"", m.Subject, m.Data)
	}
	waitFor(t, "USAGE_RAW to empty", func() bool { return streamInfo(t, js, Raw).State.Msgs == 0 })
}
