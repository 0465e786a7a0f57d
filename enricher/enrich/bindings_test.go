package enrich

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

const testBindings = `{"emitters": [
  {"name": "billing", "tags": {"team": "billing", "cost_center": "cc-7", "owner": "bob"}},
  {"name": "batch-jobs", "tags": {"team": "platform"}, "teams": ["platform", "Search"]},
  {"name": "shared", "teams": ["growth", "ads"]}
]}`

func TestParseBindings(t *testing.T) {
	b, err := ParseBindings([]byte(testBindings))
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", b.Len())
	}
	bd, ok := b.Lookup("billing")
	if want := (Binding{Name: "billing", Tags: map[string]string{"team": "billing", "cost_center": "cc-7", "owner": "bob"}}); !ok || !reflect.DeepEqual(bd, want) {
		t.Fatalf("Lookup(billing) = %+v, %v; want %+v", bd, ok, want)
	}
	if _, ok := b.Lookup("search"); ok {
		t.Fatal("Lookup(search) found a binding")
	}
	if _, ok := (*Bindings)(nil).Lookup("billing"); ok {
		t.Fatal("nil bindings bind billing")
	}

	f := func(src, want string) {
		t.Helper()
		_, err := ParseBindings([]byte(src))
		if err == nil || err.Error() != want {
			t.Errorf("ParseBindings(%s):\n got %v\nwant %s", src, err, want)
		}
	}
	f(`{"emitters": [{"name": "a.b", "tags": {"team": "x"}}]}`,
		`emitters[0]: name "a.b" is not an emitter's: 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit`)
	f(`{"emitters": [{"name": "a", "tags": {"team": "x"}}, {"name": "a", "tags": {"team": "y"}}]}`, `emitters[1] (a): bound twice`)
	f(`{"emitters": [{"name": "a"}]}`, `emitters[0] (a): no tags nor teams`)
	f(`{"emitters": [{"name": "a", "tags": {"emitter": "b"}}]}`, `emitters[0] (a): tags.emitter is set by the enricher, from the subject`)
	f(`{"emitters": [{"name": "a", "tags": {"Team": "x"}}]}`, `emitters[0] (a): tags: key "Team" may only contain a-z, 0-9, '_', '.' and '-'`)
	f(`{"emitters": [{"name": "a", "tags": {"team": "x\u200by"}}]}`, `emitters[0] (a): tags.team: contains a zero-width character (U+200B)`)
	f(`{"emitters": [{"name": "a", "tags": {"traffic": "bulk"}}]}`, `emitters[0] (a): tags.traffic: "bulk" is not one of user, background`)
	f(`{"emitters": [{"name": "a", "teams": ["x", " X ", "!!", "y\u0007"]}]}`,
		"emitters[0] (a): teams[1]: team \" X \" is listed twice\nemitters[0] (a): teams[2] \"!!\" names no team\nemitters[0] (a): teams[3]: tags.team: contains a control character")
	f(`{"emitters": [{"name": "a", "tags": {"team": "z"}, "teams": ["x"]}]}`, `emitters[0] (a): tags.team "z" is not one of its teams (x)`)
	f(`{"emitters": [{"name": "a", "tags": {"team": "x"}, "sha256": "00"}]}`, `decode: json: unknown field "sha256"`)
	f(`{"emitters": []} {}`, `decode: more than one JSON value`)
	f(strings.Repeat(" ", MaxBindingsFileBytes+1), `16777217 bytes, more than 16777216`)
}

func TestBindingTeam(t *testing.T) {
	b, err := ParseBindings([]byte(testBindings))
	if err != nil {
		t.Fatal(err)
	}
	f := func(emitter, asked, want string, wantOverridden bool) {
		t.Helper()
		bd, _ := b.Lookup(emitter)
		if got, overridden := bd.Team(asked); got != want || overridden != wantOverridden {
			t.Errorf("%s.Team(%q) = %q, %v; want %q, %v", emitter, asked, got, overridden, want, wantOverridden)
		}
	}
	f("billing", "", "billing", false)
	f("billing", "billing", "billing", false)
	f("billing", " Billing ", "billing", false)
	f("billing", "search", "billing", true)
	f("batch-jobs", "", "platform", false)
	f("batch-jobs", "search", "Search", false)
	f("batch-jobs", "payments", "platform", true)
	f("shared", "", "", false)
	f("shared", "ADS", "ads", false)
	f("shared", "search", Unallocated, true)
	f("unbound", "search", "search", false) // the zero Binding restricts nothing
}

// publishOn publishes rows as one raw batch on subject.
func publishOn(t *testing.T, js jetstream.JetStream, subject string, rows []batch.Row) {
	t.Helper()
	data, err := batch.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	m.Header.Set(stream.HeaderSchema, batch.SchemaName)
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// TestEnrichBindsEmitters sends batches as a bound emitter, an unbound one and the collector
// would, and checks the tags and team each enriched event leaves with; then a reload.
func TestEnrichBindsEmitters(t *testing.T) {
	nc, js := startJetStream(t)
	dir := t.TempDir()
	writeFile(t, dir, "emitters.json", testBindings)
	var logs bytes.Buffer
	e := runEnricher(t, nc, Config{EmitterBindingsFile: filepath.Join(dir, "emitters.json"), PricingPoll: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	at := time.Date(2025, 11, 2, 10, 0, 0, 0, time.UTC)
	row := func(id, team string, tags ...batch.Tag) batch.Row {
		return batch.Row{ID: id, Time: at, Received: at, Provider: "openai", Model: "gpt-4o", ServiceTier: event.TierStandard,
			Team: team, Feature: "chat", CostCenter: "cc-1", Tokens: event.Tokens{Input: 1, Output: 1}, ExtraTags: tags}
	}
	withSource := func(r batch.Row, source string) batch.Row { r.Source = source; return r }
	enriched := func(subject string, p int, rows ...batch.Row) []batch.Row {
		t.Helper()
		publishOn(t, js, subject, rows)
		got, err := batch.Decode(next(t, js, stream.Enriched, stream.EnrichedSubject(p)).Data())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	type want struct {
		team, feature, costCenter string
		tags                      []batch.Tag
		source                    string
	}
	check := func(got []batch.Row, wants ...want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("%d rows, want %d", len(got), len(wants))
		}
		for i, w := range wants {
			g := want{got[i].Team, got[i].Feature, got[i].CostCenter, got[i].ExtraTags, got[i].Source}
			if !reflect.DeepEqual(g, w) || !got[i].Priced {
				t.Errorf("row %s: %+v priced %v; want %+v priced", got[i].ID, g, got[i].Priced, w)
			}
		}
	}

	// billing, bound to team billing: a team it may not charge becomes billing, its bound
	// tags win, a forged emitter tag is replaced.
	check(enriched(stream.EmitterRawSubject(0, "billing"), 0,
		withSource(row("a", "search", batch.Tag{Key: "emitter", Value: "search"}, batch.Tag{Key: "owner", Value: "mallory"}), batch.SourceProxy),
		row("b", "")),
		want{"billing", "chat", "cc-7", []batch.Tag{{Key: "emitter", Value: "billing"}, {Key: "owner", Value: "bob"}}, "emitter:billing"},
		want{"billing", "chat", "cc-7", []batch.Tag{{Key: "emitter", Value: "billing"}, {Key: "owner", Value: "bob"}}, "emitter:billing"})
	// batch-jobs may charge platform and search; anything else is charged to platform.
	check(enriched(stream.EmitterRawSubject(1, "batch-jobs"), 1, row("c", "search"), row("d", "payments")),
		want{"Search", "chat", "cc-1", []batch.Tag{{Key: "emitter", Value: "batch-jobs"}}, "emitter:batch-jobs"},
		want{"platform", "chat", "cc-1", []batch.Tag{{Key: "emitter", Value: "batch-jobs"}}, "emitter:batch-jobs"})
	// An emitter without a binding keeps its tags, and is named.
	check(enriched(stream.EmitterRawSubject(2, "search-api"), 2, row("e", "search")),
		want{"search", "chat", "cc-1", []batch.Tag{{Key: "emitter", Value: "search-api"}}, "emitter:search-api"})
	// The collector's subject: no emitter, and an emitter tag from a client is dropped.
	check(enriched(stream.RawSubject(3), 3, withSource(row("f", "search", batch.Tag{Key: "emitter", Value: "billing"}, batch.Tag{Key: "z", Value: "1"}), batch.SourceProxy)),
		want{"search", "chat", "cc-1", []batch.Tag{{Key: "z", Value: "1"}}, "proxy"})

	for emitter, n := range map[string]float64{"billing": 1, "batch-jobs": 1} {
		if got := testutil.ToFloat64(e.m.overridden.WithLabelValues(emitter)); got != n {
			t.Errorf("emitter_team_overridden_total{emitter=%s} = %v, want %v", emitter, got, n)
		}
	}
	for bound, n := range map[string]float64{"true": 4, "false": 1} {
		if got := testutil.ToFloat64(e.m.emitted.WithLabelValues(bound)); got != n {
			t.Errorf("emitter_events_total{bound=%s} = %v, want %v", bound, got, n)
		}
	}

	// A broken edit is refused and the bindings in force stay; a good one is swapped in.
	writeFile(t, dir, "emitters.json", `{"emitters": [{"name": "billing"}]}`)
	if _, err := e.ReloadBindings(); err == nil || err.Error() != "reload emitter bindings (keeping those in force): "+filepath.Join(dir, "emitters.json")+": emitters[0] (billing): no tags nor teams" {
		t.Fatalf("ReloadBindings of a broken file: %v", err)
	}
	if _, err := e.ReloadBindings(); err == nil {
		t.Fatal("ReloadBindings of the same broken file: no error")
	}
	if n := strings.Count(logs.String(), "emitter bindings change refused"); n != 1 {
		t.Errorf("the broken file was logged %d times, want once:\n%s", n, logs.String())
	}
	check(enriched(stream.EmitterRawSubject(4, "billing"), 4, row("g", "search")),
		want{"billing", "chat", "cc-7", []batch.Tag{{Key: "emitter", Value: "billing"}, {Key: "owner", Value: "bob"}}, "emitter:billing"})
	writeFile(t, dir, "emitters.json", `{"emitters": [{"name": "billing", "tags": {"team": "finance"}}]}`)
	if changed, err := e.ReloadBindings(); !changed || err != nil {
		t.Fatalf("ReloadBindings = %v, %v", changed, err)
	}
	check(enriched(stream.EmitterRawSubject(5, "billing"), 5, row("h", "search")),
		want{"finance", "chat", "cc-1", []batch.Tag{{Key: "emitter", Value: "billing"}}, "emitter:billing"})

	// A subject that is neither form (only a client allowed usage.raw.> could publish it)
	// names no emitter the enricher could trust: quarantined, with the reason.
	publishOn(t, js, "usage.raw.0.a.b", []batch.Row{row("i", "search")})
	dead := next(t, js, stream.Dead, stream.DeadSubject("enricher"))
	if got, want := dead.Headers().Get(stream.HeaderReason), `subject "usage.raw.0.a.b" is not usage.raw.<partition> nor usage.raw.<partition>.<emitter>`; got != want {
		t.Errorf("dead-letter reason %q, want %q", got, want)
	}
}

// FuzzParseBindings checks that whatever a bindings file holds, ParseBindings either refuses
// it or returns bindings whose every name is an emitter's and whose tags an event may carry.
func FuzzParseBindings(f *testing.F) {
	f.Add([]byte(testBindings))
	f.Add([]byte(`{"emitters": [{"name": "a", "teams": ["x", "X"]}]}`))
	f.Add([]byte(`{"emitters": [{"name": "a.>", "tags": {"team": "x"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBindings(data)
		if err != nil {
			return
		}
		now := time.Now()
		for name, bd := range b.byName {
			if !stream.ValidEmitterName(name) || bd.Name != name {
				t.Fatalf("binding %q named %q", name, bd.Name)
			}
			if len(bd.Tags) == 0 && len(bd.Teams) == 0 {
				t.Fatalf("binding %q binds nothing", name)
			}
			u := event.Usage{ID: "x", Time: now, Provider: "p", Model: "m", ServiceTier: event.TierStandard, Tags: bd.Tags}
			if err := u.Validate(now, event.DefaultLimits); err != nil {
				t.Fatalf("binding %q: %v", name, err)
			}
		}
	})
}
