package enrich

import (
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
)

func TestEnrichAttributes(t *testing.T) {
	nc, js := startJetStream(t)
	dir := t.TempDir()
	writeFile(t, dir, "attribution.yaml", "defaults: {team: unallocated}\nmax_values: {team: 3}\nservices: [{service: checkout-api, team: payments, owner: alice}]\n")
	e := runEnricher(t, nc, Config{AttributionFile: filepath.Join(dir, "attribution.yaml"), PricingPoll: time.Hour, Logger: slog.New(slog.DiscardHandler)})

	at := time.Date(2025, 11, 2, 10, 0, 0, 0, time.UTC)
	publish := func(p int, rows []batch.Row) []batch.Row {
		t.Helper()
		data, err := batch.Encode(rows)
		if err != nil {
			t.Fatal(err)
		}
		publishRaw(t, js, p, data, batch.SchemaName)
		got, err := batch.Decode(next(t, js, stream.Enriched, stream.EnrichedSubject(p)).Data())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	row := func(id, team, service string) batch.Row {
		r := batch.Row{ID: id, Time: at, Received: at, Provider: "openai", Model: "gpt-4o", ServiceTier: event.TierStandard,
			Team: team, Tokens: event.Tokens{Input: 1, Output: 1}}
		if service != "" {
			r.ExtraTags = []batch.Tag{{Key: "service", Value: service}}
		}
		return r
	}
	got := publish(0, []batch.Row{row("a", " Search Team ", ""), row("b", "", "Checkout-API"), row("c", "", "")})
	want := []struct {
		team string
		tags []batch.Tag
	}{
		{"search-team", nil},
		{"payments", []batch.Tag{{Key: "owner", Value: "alice"}, {Key: "service", Value: "Checkout-API"}}},
		{"unallocated", nil},
	}
	for i, w := range want {
		if got[i].Team != w.team || !reflect.DeepEqual(got[i].ExtraTags, w.tags) || !got[i].Priced {
			t.Errorf("row %s: team %q tags %v priced %v; want %q %v true", got[i].ID, got[i].Team, got[i].ExtraTags, got[i].Priced, w.team, w.tags)
		}
	}

	// The team cap (3: search-team, payments, unallocated) folds a fourth team into "other".
	if got := publish(3, []batch.Row{row("f", "Growth", "")}); got[0].Team != "other" {
		t.Errorf("team beyond the cap: %q, want other", got[0].Team)
	}
	if got := testutil.ToFloat64(e.m.folded.WithLabelValues("team")); got != 1 {
		t.Errorf("folded{tag=team} = %v, want 1", got)
	}

	// A broken edit is refused and the rules in force stay; a good one is swapped in.
	writeFile(t, dir, "attribution.yaml", "services: [{service: x}]\n")
	if _, err := e.ReloadAttribution(); err == nil || !strings.HasSuffix(err.Error(), `attribution.yaml: service "x": gives no team, cost_center or owner`) {
		t.Fatalf("ReloadAttribution of a broken file: %v", err)
	}
	if got := publish(1, []batch.Row{row("d", "", "")}); got[0].Team != "unallocated" {
		t.Errorf("after a refused change: team %q, want unallocated", got[0].Team)
	}
	writeFile(t, dir, "attribution.yaml", "defaults: {team: nobody}\n")
	if changed, err := e.ReloadAttribution(); !changed || err != nil {
		t.Fatalf("ReloadAttribution = %v, %v", changed, err)
	}
	if got := publish(2, []batch.Row{row("e", "", "checkout-api")}); got[0].Team != "nobody" || got[0].ExtraTags[0].Key != "service" || len(got[0].ExtraTags) != 1 {
		t.Errorf("after reload: %+v", got[0])
	}
}
