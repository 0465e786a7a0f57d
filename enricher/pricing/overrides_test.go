package pricing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// acmeDeal is an organisation's contract with acme: 10% off everything from July 2025, 20%
// off m1 from August, the provider-wide discount ended in 2026 (m1 keeps its own), explicit
// m1 rates from October, a fine-tuned model of its own, and an Azure-style deployment name.
const acmeDeal = `
organisation: example-corp
discounts:
  - {provider: acme, percent: "10", effective: 2025-07-01}
  - {provider: ACME, model: m1-2025-01-01, percent: "12.5", effective: 2025-07-01}
  - {provider: acme, model: m1, percent: "20", effective: 2025-08-01}
  - {provider: acme, percent: "0", effective: 2026-01-01}
models:
  - provider: acme
    model: m1
    prices:
      - {effective: 2025-10-01, input: "2", output: "10"}
  - provider: acme
    model: ft:m1:example-corp::x1
    aliases: [support-bot]
    prices:
      - {effective: 2025-05-01, input: "4", output: "16", tiers: {batch: {input: "2", output: "8"}}}
  - provider: selfhosted
    model: llama-internal
    prices:
      - {effective: 2025-01-01, input: "0.01", output: "0.01"}
deployments:
  - {provider: acme, name: prod-m1-eastus, model: m1-alias}
`

func dealCatalog(tb testing.TB) *Catalog {
	tb.Helper()
	o, err := pricefile.ParseOverrides("deal.overrides.yaml", []byte(acmeDeal))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := Build([]pricefile.File{parse(tb, "acme.yaml", acme)}, []pricefile.Overrides{o})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestOverrides(t *testing.T) {
	c := dealCatalog(t)
	day := func(s string) time.Time {
		d, _ := time.Parse(time.DateOnly, s)
		return d.Add(12 * time.Hour)
	}
	in := event.Tokens{Input: 1000, Output: 100}
	for _, tt := range []struct {
		name, model, tier string
		at                time.Time
		tokens            event.Tokens
		want              Quote
	}{
		// List m1 from 2025-06-01: 1000·3 + 100·15 = 4,500 µUSD.
		{"before any discount", "m1", "", day("2025-06-30"), in,
			Quote{true, "m1", "acme/m1@2025-06-01/standard", 4_500_000_000, 0}},
		// 10% off every rate: 4,050 µUSD; the savings are against the discounted input rate.
		{"provider-wide 10%", "m1", "", day("2025-07-01"), event.Tokens{Input: 1000, CachedInput: 500, Output: 100},
			Quote{true, "m1", "acme/m1@2025-06-01/standard/discount=10%@2025-07-01", 500*2_700_000 + 500*270_000 + 100*13_500_000, 500 * (2_700_000 - 270_000)}},
		{"provider-wide batch", "m1", "batch", day("2025-07-15"), in,
			Quote{true, "m1", "acme/m1@2025-06-01/batch/discount=10%@2025-07-01", 2_025_000_000, 0}},
		// The model's own 20% wins over the provider's 10%: 3,600 µUSD.
		{"model 20%", "m1", "", day("2025-08-01"), in,
			Quote{true, "m1", "acme/m1@2025-06-01/standard/discount=20%@2025-08-01", 3_600_000_000, 0}},
		// Explicit rates from October, never discounted: 1000·2 + 100·10 = 3,000 µUSD.
		{"explicit rates", "M1-Alias", "", day("2025-10-01"), in,
			Quote{true, "m1", "acme/m1@2025-10-01/standard/org", 3_000_000_000, 0}},
		// The explicit row has no batch tier: standard explicit rates.
		{"explicit rates, batch", "m1", "batch", day("2026-02-01"), in,
			Quote{true, "m1", "acme/m1@2025-10-01/standard/org", 3_000_000_000, 0}},
		// Before the list's first row the model is still unpriced: overrides do not invent
		// prices for the past.
		{"before the list", "m1", "", day("2024-12-31"), in, Quote{}},
		// The snapshot priced apart has its own 12.5% (given under its own name): (1000+100)·100·0.875.
		{"snapshot's own discount", "m1-2025-01-01", "", day("2025-07-02"), in,
			Quote{true, "m1-2025-01-01", "acme/m1-2025-01-01@2025-01-01/standard/discount=12.5%@2025-07-01", 96_250_000_000, 0}},
		// The provider-wide discount ending does not end the snapshot's own.
		{"own discount outlives the provider's", "m1-2025-01-01", "", day("2026-01-01"), in,
			Quote{true, "m1-2025-01-01", "acme/m1-2025-01-01@2025-01-01/standard/discount=12.5%@2025-07-01", 96_250_000_000, 0}},
		// A private fine-tuned model, by name and alias, in its tiers: 1000·4 + 100·16 µUSD.
		{"private model", "ft:m1:example-corp::x1", "", day("2025-07-01"), in,
			Quote{true, "ft:m1:example-corp::x1", "acme/ft:m1:example-corp::x1@2025-05-01/standard/org", 5_600_000_000, 0}},
		{"private model alias, batch", "Support-Bot", "batch", day("2025-07-01"), in,
			Quote{true, "ft:m1:example-corp::x1", "acme/ft:m1:example-corp::x1@2025-05-01/batch/org", 2_800_000_000, 0}},
		{"private provider", "llama-internal", "", day("2025-07-01"), in,
			Quote{true, "llama-internal", "selfhosted/llama-internal@2025-01-01/standard/org", 11_000_000, 0}},
		// The deployment name resolves to what its target resolves to.
		{"deployment", "PROD-m1-eastus", "", day("2025-06-30"), in,
			Quote{true, "m1", "acme/m1@2025-06-01/standard", 4_500_000_000, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			provider := "acme"
			if tt.model == "llama-internal" {
				provider = "selfhosted"
			}
			if got := c.Price(provider, tt.model, tt.tier, tt.at, tt.tokens, false); got != tt.want {
				t.Errorf("Price(%s, %q, %s):\n got %+v\nwant %+v", tt.model, tt.tier, tt.at.Format(time.DateOnly), got, tt.want)
			}
		})
	}
	// A model without a discount of its own pays list again once the provider-wide one ends.
	const other = `{provider: acme, models: [{model: m1, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}, {model: m2, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`
	o, err := pricefile.ParseOverrides("o.overrides.yaml", []byte(`discounts: [{provider: acme, percent: "10", effective: 2025-07-01}, {provider: acme, percent: "0", effective: 2026-01-01}]`))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Build([]pricefile.File{parse(t, "acme.yaml", other)}, []pricefile.Overrides{o})
	if err != nil {
		t.Fatal(err)
	}
	for at, want := range map[string]Quote{
		"2025-06-30": {true, "m2", "acme/m2@2025-01-01/standard", 1_100_000_000, 0},
		"2025-07-01": {true, "m2", "acme/m2@2025-01-01/standard/discount=10%@2025-07-01", 990_000_000, 0},
		"2026-01-01": {true, "m2", "acme/m2@2025-01-01/standard", 1_100_000_000, 0},
	} {
		if got := c2.Price("acme", "m2", "", day(at), in, false); got != want {
			t.Errorf("m2 at %s:\n got %+v\nwant %+v", at, got, want)
		}
	}
}

func TestOverridesErrors(t *testing.T) {
	files := []pricefile.File{parse(t, "acme.yaml", acme)}
	for _, tt := range []struct{ name, src, want string }{
		{"unknown provider", `discounts: [{provider: nope, percent: "5", effective: 2025-01-01}]`,
			`o.overrides.yaml: discount of 5% from 2025-01-01 for provider "nope": no pricing file has this provider`},
		{"unknown model", `discounts: [{provider: acme, model: m9, percent: "5", effective: 2025-01-01}]`,
			`o.overrides.yaml: discount of 5% from 2025-01-01 for provider "acme": the catalogue has no model "m9"`},
		{"discount by alias", `discounts: [{provider: acme, model: m1-alias, percent: "5", effective: 2025-01-01}]`,
			`o.overrides.yaml: discount of 5% from 2025-01-01 for provider "acme": model "m1-alias" is not a model name (it means "m1"): name the model`},
		{"two discounts on one day", `discounts: [{provider: acme, model: m1, percent: "5", effective: 2025-01-01}, {provider: acme, model: M1, percent: "6", effective: 2025-01-01}]`,
			`o.overrides.yaml: discount #2: a discount for provider "acme" model "M1" effective 2025-01-01 is already given`},
		{"override by alias", `models: [{provider: acme, model: m1-alias, prices: [{effective: 2025-01-01, input: 1, output: 1}]}]`,
			`o.overrides.yaml: "m1-alias" is an alias of model "m1" of provider "acme": override the model by its name`},
		{"private alias collides", `models: [{provider: acme, model: mine, aliases: [M1], prices: [{effective: 2025-01-01, input: 1, output: 1}]}]`,
			`acme.yaml: name "M1" is claimed by model "m1" and model "mine" of o.overrides.yaml`},
		{"deployment to nothing", `deployments: [{provider: acme, name: d1, model: m9}]`,
			`o.overrides.yaml: deployment "d1" of provider "acme": the catalogue has no model "m9"`},
		{"deployment of unknown provider", `deployments: [{provider: azure, name: d1, model: m1}]`,
			`o.overrides.yaml: deployment "d1" of provider "azure": no pricing file has this provider`},
		{"deployment name is another model", `deployments: [{provider: acme, name: m1-2025-01-01, model: m1}]`,
			`acme.yaml: name "m1-2025-01-01" is claimed by model "m1-2025-01-01" and deployment of o.overrides.yaml`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := pricefile.ParseOverrides("o.overrides.yaml", []byte(tt.src))
			if err == nil {
				_, err = Build(files, []pricefile.Overrides{o})
			}
			if err == nil || err.Error() != tt.want {
				t.Errorf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
	// The same model overridden by two files.
	a, _ := pricefile.ParseOverrides("a.overrides.yaml", []byte(`models: [{provider: acme, model: m1, prices: [{effective: 2025-01-01, input: 1, output: 1}]}]`))
	b, _ := pricefile.ParseOverrides("b.overrides.yaml", []byte(`models: [{provider: acme, model: M1, prices: [{effective: 2025-02-01, input: 1, output: 1}]}]`))
	want := `b.overrides.yaml: model "M1" of provider "acme" is also overridden by a.overrides.yaml`
	if _, err := Build(files, []pricefile.Overrides{a, b}); err == nil || err.Error() != want {
		t.Errorf("two overrides of one model:\n got %v\nwant %s", err, want)
	}
	// Two provider-wide discounts on one day, from two files.
	c, _ := pricefile.ParseOverrides("c.overrides.yaml", []byte(`discounts: [{provider: acme, percent: "5", effective: 2025-01-01}]`))
	d, _ := pricefile.ParseOverrides("d.overrides.yaml", []byte(`discounts: [{provider: acme, percent: "6", effective: 2025-01-01}]`))
	want = `provider "acme": two discounts for every model take effect on 2025-01-01`
	if _, err := Build(files, []pricefile.Overrides{c, d}); err == nil || err.Error() != want {
		t.Errorf("two discounts on one day:\n got %v\nwant %s", err, want)
	}
}

func TestOverridesInADirectory(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{"acme.yaml": acme, "deal" + OverridesSuffix: acmeDeal} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != dealCatalog(t).Version() || c.Version() == acmeCatalog(t).Version() {
		t.Errorf("versions: dir %s, built %s, without overrides %s", c.Version(), dealCatalog(t).Version(), acmeCatalog(t).Version())
	}
	if q := c.Price("acme", "prod-m1-eastus", "", june, event.Tokens{Input: 1}, false); q.Model != "m1" {
		t.Errorf("deployment in a directory: %+v", q)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken"+OverridesSuffix), []byte("discounts: [{provider: acme}]"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadDir(dir)
	if err == nil || !strings.Contains(err.Error(), "broken.overrides.yaml: discount #1: effective: missing") {
		t.Errorf("LoadDir with a broken overrides file: %v", err)
	}
}
