package enrich

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
)

const acmeV1 = `provider: acme
models:
  - model: m1
    prices:
      - {effective: 2025-01-01, input: "1", output: "2"}
`

// acmeV2 raises the input price from 2025-06-01 on.
const acmeV2 = acmeV1 + `      - {effective: 2025-06-01, input: "3", output: "2"}
`

func writeFile(t *testing.T, dir, name, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// priceOne publishes a one-event raw batch on partition p and returns the enriched row.
func priceOne(t *testing.T, js jetstream.JetStream, p int, id string) batch.Row {
	t.Helper()
	at := time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	data, err := batch.Encode([]batch.Row{{ID: id, Time: at, Received: at, Partition: p, Provider: "acme", Model: "m1",
		ServiceTier: event.TierStandard, Tokens: event.Tokens{Input: 1000, Output: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, p, data, batch.SchemaName)
	rows, err := batch.Decode(next(t, js, stream.Enriched, stream.EnrichedSubject(p)).Data())
	if err != nil || len(rows) != 1 || rows[0].ID != id {
		t.Fatalf("enriched %s: rows %+v, err %v", id, rows, err)
	}
	return rows[0]
}

func TestReloadPricingSwapsAndRefusesBrokenFiles(t *testing.T) {
	nc, js := startJetStream(t)
	dir := t.TempDir()
	writeFile(t, dir, "acme.yaml", acmeV1)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	// The poll interval is long so that only the test's own ReloadPricing calls reload.
	e := runEnricher(t, nc, Config{PricingDir: dir, PricingPoll: time.Hour, Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	check := func(r batch.Row, cost int64, version string) {
		t.Helper()
		if !r.Priced || r.CostPico != cost || r.PriceVersion != version {
			t.Errorf("event %s: priced %v cost %d version %q, want cost %d version %q", r.ID, r.Priced, r.CostPico, r.PriceVersion, cost, version)
		}
	}
	// 1000·1e6 + 100·2e6.
	check(priceOne(t, js, 0, "before"), 1_200_000_000, "acme/m1@2025-01-01/standard")

	if changed, err := e.ReloadPricing(); changed || err != nil {
		t.Fatalf("ReloadPricing with nothing changed = %v, %v", changed, err)
	}
	v1 := e.Catalog().Version()
	writeFile(t, dir, "acme.yaml", acmeV2)
	if changed, err := e.ReloadPricing(); !changed || err != nil {
		t.Fatalf("ReloadPricing after a change = %v, %v", changed, err)
	}
	v2 := e.Catalog().Version()
	if v2 == v1 {
		t.Fatalf("catalogue version stayed %s after a price change", v1)
	}
	// 1000·3e6 + 100·2e6 under the new row.
	check(priceOne(t, js, 1, "after"), 3_200_000_000, "acme/m1@2025-06-01/standard")

	// A broken edit is refused, precisely, and the catalogue in force stays.
	writeFile(t, dir, "acme.yaml", strings.Replace(acmeV2, `input: "3"`, `input: "3x"`, 1))
	_, err := e.ReloadPricing()
	want := "reload pricing catalogue (keeping version " + v2 + "): " + dir + `: acme.yaml: model "m1" price effective 2025-06-01: input "3x": not a decimal`
	if err == nil || err.Error() != want {
		t.Fatalf("ReloadPricing of a broken file:\n got %v\nwant %s", err, want)
	}
	if _, err := e.ReloadPricing(); err == nil { // polled again: still refused, reported once
		t.Fatal("ReloadPricing accepted the broken file the second time")
	}
	// So is a second file claiming the same provider: ambiguity is an error, not a guess.
	writeFile(t, dir, "acme.yaml", acmeV2)
	writeFile(t, dir, "acme-copy.yaml", acmeV1)
	if _, err := e.ReloadPricing(); err == nil || !strings.Contains(err.Error(), `provider "acme" is priced by both acme-copy.yaml and acme.yaml`) {
		t.Fatalf("ReloadPricing with two files for one provider: %v", err)
	}
	if e.Catalog().Version() != v2 {
		t.Fatalf("a refused change replaced the catalogue: version %s, want %s", e.Catalog().Version(), v2)
	}
	check(priceOne(t, js, 2, "during-breakage"), 3_200_000_000, "acme/m1@2025-06-01/standard")
	if got := testutil.ToFloat64(e.m.reloads.WithLabelValues("error")); got != 2 {
		t.Errorf("reloads{result=error} = %v, want 2 (two distinct broken contents)", got)
	}
	if got := testutil.ToFloat64(e.m.reloadOK); got != 0 {
		t.Errorf("reload_ok = %v while broken, want 0", got)
	}
	if n := strings.Count(logs.String(), "pricing change refused"); n != 2 {
		t.Errorf("logged the refusal %d times, want 2:\n%s", n, logs.String())
	}

	// Removing the copy restores the content in force: no reload, and healthy again.
	if err := os.Remove(filepath.Join(dir, "acme-copy.yaml")); err != nil {
		t.Fatal(err)
	}
	if changed, err := e.ReloadPricing(); changed || err != nil {
		t.Fatalf("ReloadPricing back to the content in force = %v, %v", changed, err)
	}
	if got := testutil.ToFloat64(e.m.reloadOK); got != 1 {
		t.Errorf("reload_ok = %v after recovery, want 1", got)
	}
	if got := testutil.ToFloat64(e.m.reloads.WithLabelValues("ok")); got != 1 {
		t.Errorf("reloads{result=ok} = %v, want 1", got)
	}
}

func TestPricingDirectoryIsWatched(t *testing.T) {
	nc, _ := startJetStream(t)
	dir := t.TempDir()
	writeFile(t, dir, "acme.yaml", acmeV1)
	e := runEnricher(t, nc, Config{PricingDir: dir, PricingPoll: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})

	v1 := e.Catalog().Version()
	writeFile(t, dir, "acme.yaml", acmeV2)
	testkit.Eventually(t, 10*time.Second, "the changed pricing directory loaded", func() bool { return e.Catalog().Version() != v1 })
}

func TestReloadPricingOfAnEmptiedDirectory(t *testing.T) {
	nc, _ := startJetStream(t)
	dir := t.TempDir()
	writeFile(t, dir, "acme.yaml", acmeV1)
	e, err := New(Config{PricingDir: dir, Logger: slog.New(slog.DiscardHandler)}, nc)
	if err != nil {
		t.Fatal(err)
	}
	v1 := e.Catalog().Version()
	if err := os.Remove(filepath.Join(dir, "acme.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err = e.ReloadPricing()
	want := "reload pricing catalogue (keeping version " + v1 + "): read pricing directory " + dir + ": no *.yaml pricing files"
	if err == nil || err.Error() != want || e.Catalog().Version() != v1 {
		t.Errorf("ReloadPricing of an emptied directory:\n got %v (version %s)\nwant %s (version %s)", err, e.Catalog().Version(), want, v1)
	}
}

func TestNewRefusesABrokenPricingDirectory(t *testing.T) {
	nc, _ := startJetStream(t)
	dir := t.TempDir()
	writeFile(t, dir, "acme.yaml", "provider: acme\n")
	_, err := New(Config{PricingDir: dir}, nc)
	want := "load pricing catalogue from " + dir + ": acme.yaml: models: missing"
	if err == nil || err.Error() != want {
		t.Fatalf("New error:\n got %v\nwant %s", err, want)
	}
}
