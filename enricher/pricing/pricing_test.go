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

// acme has round prices so that every expected cost below can be checked by hand. Per token,
// in PicoUSD: input 3e6, cached 3e5, 5-minute write 3.75e6, 1-hour write 6e6, output 15e6,
// reasoning 20e6 since 2025-06-01; input 1e6 and output 2e6 (all else defaulted) before.
const acme = `
provider: acme
models:
  - model: m1
    aliases: [M1-Alias]
    prices:
      - effective: 2025-06-01
        input: "3"
        cached_input: "0.30"
        cache_write: "3.75"
        cache_write_1h: "6"
        output: "15"
        reasoning: "20"
        tiers:
          batch: {input: "1.50", cached_input: "0.15", cache_write: "1.875", cache_write_1h: "3", output: "7.50", reasoning: "10"}
          flex: {input: "2"}
      - effective: 2025-01-01
        input: "1"
        output: "2"
  - model: m1-2025-01-01
    prices:
      - effective: 2025-01-01
        input: "100"
        output: "100"
`

func parse(tb testing.TB, name, src string) pricefile.File {
	tb.Helper()
	f, err := pricefile.Parse(name, []byte(src))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func acmeCatalog(tb testing.TB) *Catalog {
	tb.Helper()
	c, err := New(parse(tb, "acme.yaml", acme))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

var (
	june  = time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	mixed = event.Tokens{Input: 1000, CachedInput: 200, CacheWrite: 300, CacheWrite1h: 100, Output: 500, Reasoning: 100}
)

func TestPriceTokenClasses(t *testing.T) {
	c := acmeCatalog(t)
	for _, tt := range []struct {
		name          string
		tokens        event.Tokens
		cost, savings pricefile.PicoUSD
	}{
		{"nothing", event.Tokens{}, 0, 0},
		{"input", event.Tokens{Input: 1}, 3_000_000, 0},
		{"cached input", event.Tokens{Input: 1, CachedInput: 1}, 300_000, 2_700_000},
		{"5-minute cache write", event.Tokens{Input: 1, CacheWrite: 1}, 3_750_000, 0},
		{"1-hour cache write", event.Tokens{Input: 1, CacheWrite: 1, CacheWrite1h: 1}, 6_000_000, 0},
		{"output", event.Tokens{Output: 1}, 15_000_000, 0},
		{"reasoning", event.Tokens{Output: 1, Reasoning: 1}, 20_000_000, 0},
		// 500·3e6 + 200·3e5 + 200·3.75e6 + 100·6e6 + 400·15e6 + 100·20e6; savings 200·2.7e6.
		{"all classes", mixed, 10_910_000_000, 540_000_000},
		{"largest valid call", event.Tokens{Input: 100_000_000, Output: 100_000_000, Reasoning: 100_000_000}, 2_300_000_000_000_000, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Price("acme", "m1", "", june, tt.tokens, false)
			want := Quote{Priced: true, Model: "m1", Version: "acme/m1@2025-06-01/standard", Cost: tt.cost, Savings: tt.savings}
			if got != want {
				t.Errorf("Price(%+v):\n got %+v\nwant %+v", tt.tokens, got, want)
			}
		})
	}
}

func TestPriceTiersAndDates(t *testing.T) {
	c := acmeCatalog(t)
	newRow := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		tier string
		at   time.Time
		want Quote
	}{
		{"standard", "standard", june, Quote{true, "m1", "acme/m1@2025-06-01/standard", 10_910_000_000, 540_000_000}},
		{"empty tier is standard", "", june, Quote{true, "m1", "acme/m1@2025-06-01/standard", 10_910_000_000, 540_000_000}},
		{"batch, full override", "batch", june, Quote{true, "m1", "acme/m1@2025-06-01/batch", 5_455_000_000, 270_000_000}},
		{"batch, any case", "BATCH", june, Quote{true, "m1", "acme/m1@2025-06-01/batch", 5_455_000_000, 270_000_000}},
		// flex overrides input only: 500·2e6 + the standard prices of every other class.
		{"flex, partial override", "flex", june, Quote{true, "m1", "acme/m1@2025-06-01/flex", 10_410_000_000, 340_000_000}},
		{"priority, not priced: standard", "priority", june, Quote{true, "m1", "acme/m1@2025-06-01/standard", 10_910_000_000, 540_000_000}},
		{"unknown tier: standard", "default", june, Quote{true, "m1", "acme/m1@2025-06-01/standard", 10_910_000_000, 540_000_000}},
		{"at the boundary: new row", "", newRow, Quote{true, "m1", "acme/m1@2025-06-01/standard", 10_910_000_000, 540_000_000}},
		// Old row: every input class at 1e6 (defaults), every output class at 2e6.
		{"just before the boundary: old row", "", newRow.Add(-time.Nanosecond), Quote{true, "m1", "acme/m1@2025-01-01/standard", 2_000_000_000, 0}},
		{"old row has no batch tier", "batch", newRow.Add(-time.Nanosecond), Quote{true, "m1", "acme/m1@2025-01-01/standard", 2_000_000_000, 0}},
		{"boundary is UTC", "", time.Date(2025, 6, 1, 1, 0, 0, 0, time.FixedZone("CEST", 2*3600)), Quote{true, "m1", "acme/m1@2025-01-01/standard", 2_000_000_000, 0}},
		{"first row's first instant", "", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Quote{true, "m1", "acme/m1@2025-01-01/standard", 2_000_000_000, 0}},
		{"before any row", "", time.Date(2024, 12, 31, 23, 59, 59, 999_999_999, time.UTC), Quote{}},
		{"zero time", "", time.Time{}, Quote{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Price("acme", "m1", tt.tier, tt.at, mixed, false); got != tt.want {
				t.Errorf("Price(tier %q, at %v):\n got %+v\nwant %+v", tt.tier, tt.at, got, tt.want)
			}
		})
	}
}

func TestPriceMatching(t *testing.T) {
	c := acmeCatalog(t)
	tokens := event.Tokens{Input: 1}
	for _, tt := range []struct {
		provider, model string
		want            string // canonical model, "" for unpriced
	}{
		{"acme", "m1", "m1"},
		{"acme", "M1", "m1"},
		{"ACME", "m1", "m1"},
		{"acme", "m1-alias", "m1"},
		{"acme", "M1-ALIAS", "m1"},
		{"acme", "acme/m1", "m1"},
		{"acme", "Acme/M1-Alias", "m1"},
		{"acme", "m1-2025-06-01", "m1"},
		{"acme", "m1-20250601", "m1"},
		{"acme", "m1@20250601", "m1"},
		{"acme", "m1@2025-06-01", ""},
		{"acme", "m1@20251301", ""},
		{"acme", "acme/M1-20250601", "m1"},
		{"acme", "m1-2025-01-01", "m1-2025-01-01"}, // an exact name wins over the snapshot rule
		{"acme", "m1-alias-2025-06-01", ""},        // snapshots resolve to canonical names only
		{"acme", "m1-2025-13-01", ""},
		{"acme", "m1-20251301", ""},
		{"acme", "m1-2025-06-1x", ""},
		{"acme", "m1-12345678x", ""},
		{"acme", "-20250601", ""},
		{"acme", "m1-", ""},
		{"acme", "m2", ""},
		{"acme", "", ""},
		{"acme", "other/m1", ""},
		{"acme", "acme/", ""},
		{"acme", "acme//m1", ""},
		{"nope", "m1", ""},
		{"", "m1", ""},
		{"acme", strings.Repeat("m", 300), ""},
	} {
		got := c.Price(tt.provider, tt.model, "", june, tokens, false)
		if got.Model != tt.want || got.Priced != (tt.want != "") {
			t.Errorf("Price(%q, %q) = %+v, want model %q", tt.provider, tt.model, got, tt.want)
		}
		if !got.Priced && got != (Quote{}) {
			t.Errorf("Price(%q, %q) = %+v: an unpriced quote must be zero", tt.provider, tt.model, got)
		}
	}
}

func TestPriceCacheHit(t *testing.T) {
	c := acmeCatalog(t)
	got := c.Price("acme", "m1", "batch", june, mixed, true)
	want := Quote{Priced: true, Model: "m1", Version: "acme/m1@2025-06-01/batch", Cost: 0, Savings: 5_455_000_000}
	if got != want {
		t.Errorf("cache hit:\n got %+v\nwant %+v", got, want)
	}
	if got := c.Price("acme", "m2", "", june, mixed, true); got != (Quote{}) {
		t.Errorf("cache hit of an unknown model = %+v, want unpriced", got)
	}
}

func TestPriceInvalidTokens(t *testing.T) {
	c := acmeCatalog(t)
	for _, tokens := range []event.Tokens{
		{Input: -1},
		{Output: -1},
		{Input: 10, CachedInput: 6, CacheWrite: 5},
		{Input: 10, CacheWrite: 1, CacheWrite1h: 2},
		{Output: 1, Reasoning: 2},
		{Input: maxTokens + 1},
	} {
		if got := c.Price("acme", "m1", "", june, tokens, false); got != (Quote{}) {
			t.Errorf("Price(%+v) = %+v, want unpriced", tokens, got)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files []string
		want  string
	}{
		{"alias claims another model's name", []string{`
provider: acme
models:
  - {model: a, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}
  - {model: b, aliases: [A], prices: [{effective: 2025-01-01, input: "1", output: "1"}]}
`}, `f0.yaml: name "A" is claimed by model "a" and model "b"`},
		{"two aliases collide, ignoring case", []string{`
provider: acme
models:
  - {model: a, aliases: [x], prices: [{effective: 2025-01-01, input: "1", output: "1"}]}
  - {model: b, aliases: [X], prices: [{effective: 2025-01-01, input: "1", output: "1"}]}
`}, `f0.yaml: name "X" is claimed by model "a" and model "b"`},
		{"same canonical name twice", []string{`
provider: acme
models:
  - {model: a, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}
  - {model: a, prices: [{effective: 2025-02-01, input: "1", output: "1"}]}
`}, `f0.yaml: name "a" is claimed by model "a" and model "a"`},
		{"one provider, two files", []string{
			`{provider: acme, models: [{model: a, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`,
			`{provider: Acme, models: [{model: b, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`,
		}, `provider "Acme" is priced by both f0.yaml and f1.yaml`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var files []pricefile.File
			for i, src := range tt.files {
				files = append(files, parse(t, "f"+string(rune('0'+i))+".yaml", src))
			}
			_, err := New(files...)
			if err == nil || err.Error() != tt.want {
				t.Errorf("New error = %v, want %q", err, tt.want)
			}
		})
	}
	// A model may repeat its own name as an alias: that is not ambiguous.
	if _, err := New(parse(t, "ok.yaml", `{provider: acme, models: [{model: a, aliases: [A, a], prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`)); err != nil {
		t.Errorf("New with a self-alias: %v", err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadDir(dir); err == nil || err.Error() != "load pricing catalogue from "+dir+": no *.yaml pricing files" {
		t.Errorf("LoadDir(empty) error = %v", err)
	}
	write("acme.yaml", acme)
	write("notes.txt", "not a pricing file")
	c, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != acmeCatalog(t).Version() {
		t.Errorf("LoadDir version %s differs from New's %s", c.Version(), acmeCatalog(t).Version())
	}
	if q := c.Price("acme", "m1", "", june, event.Tokens{Input: 1}, false); q.Cost != 3_000_000 {
		t.Errorf("LoadDir catalogue prices m1 at %v", q)
	}
	write("bad.yaml", "provider: bad\n")
	want := "load pricing catalogue from " + dir + ": bad.yaml: models: missing"
	if _, err := LoadDir(dir); err == nil || err.Error() != want {
		t.Errorf("LoadDir error = %v, want %q", err, want)
	}
}

func TestVersion(t *testing.T) {
	a := parse(t, "a.yaml", acme)
	b := parse(t, "b.yaml", `{provider: other, models: [{model: x, prices: [{effective: 2025-01-01, input: "1", output: "1"}]}]}`)
	ab, _ := New(a, b)
	ba, _ := New(b, a)
	if ab.Version() != ba.Version() || len(ab.Version()) != 12 {
		t.Errorf("Version depends on file order or has the wrong length: %q vs %q", ab.Version(), ba.Version())
	}
	// Comments, layout and source do not change the version; a price does.
	reformatted := parse(t, "a.yaml", "# comment\nsource: elsewhere\n"+strings.ReplaceAll(acme, `input: "3"`, `input: "3.000"`))
	changed := parse(t, "a.yaml", strings.ReplaceAll(acme, `input: "3"`, `input: "3.000001"`))
	same, _ := New(reformatted, b)
	other, _ := New(changed, b)
	if same.Version() != ab.Version() {
		t.Errorf("reformatting changed the version: %s -> %s", ab.Version(), same.Version())
	}
	if other.Version() == ab.Version() {
		t.Errorf("a price change kept the version %s", ab.Version())
	}
}

// TestDefault pins a few prices of the shipped catalogue, worked out by hand from the list
// prices.
func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		provider, model, tier string
		at                    time.Time
		tokens                event.Tokens
		want                  Quote
	}{
		// DESIGN.md §2.1's example: 200·2.50 + 1000·1.25 + 300·10 µUSD = $0.004750.
		{"openai", "gpt-4o-2024-08-06", "standard", at, event.Tokens{Input: 1200, CachedInput: 1000, Output: 300},
			Quote{true, "gpt-4o", "openai/gpt-4o@2024-10-01/standard", 4_750_000_000, 1_250_000_000}},
		{"openai", "gpt-4o", "", time.Date(2024, 9, 30, 23, 0, 0, 0, time.UTC), event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "gpt-4o", "openai/gpt-4o@2024-05-13/standard", 20_000_000_000, 0}},
		{"openai", "gpt-4o-2024-05-13", "", at, event.Tokens{Input: 1000, Output: 1000},
			Quote{true, "gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13@2024-05-13/standard", 20_000_000_000, 0}},
		{"openai", "o3-2025-04-16", "flex", time.Date(2025, 6, 9, 0, 0, 0, 0, time.UTC), event.Tokens{Input: 1000, Output: 1000, Reasoning: 800},
			Quote{true, "o3", "openai/o3@2025-04-16/flex", 25_000_000_000, 0}},
		{"openai", "o3", "flex", at, event.Tokens{Input: 1000, Output: 1000, Reasoning: 800},
			Quote{true, "o3", "openai/o3@2025-06-10/flex", 5_000_000_000, 0}},
		{"openai", "openai/gpt-5-nano", "priority", at, event.Tokens{Input: 1_000_000},
			Quote{true, "gpt-5-nano", "openai/gpt-5-nano@2025-08-07/standard", 50_000_000_000, 0}},
		// 1000·3 + 1000·0.30 + 500·3.75 + 500·6 + 2000·15 µUSD; savings 1000·2.70 µUSD. Batch halves both.
		{"anthropic", "claude-sonnet-4-5-20250929", "", at, event.Tokens{Input: 3000, CachedInput: 1000, CacheWrite: 1000, CacheWrite1h: 500, Output: 2000},
			Quote{true, "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5@2025-09-29/standard", 38_175_000_000, 2_700_000_000}},
		{"anthropic", "claude-sonnet-4-5-20250929", "batch", at, event.Tokens{Input: 3000, CachedInput: 1000, CacheWrite: 1000, CacheWrite1h: 500, Output: 2000},
			Quote{true, "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5@2025-09-29/batch", 19_087_500_000, 1_350_000_000}},
		{"anthropic", "claude-opus-4-0", "", at, event.Tokens{Output: 1},
			Quote{true, "claude-opus-4", "anthropic/claude-opus-4@2025-05-22/standard", 75_000_000, 0}},
		{"anthropic", "claude-haiku-4-5", "", time.Date(2025, 10, 14, 0, 0, 0, 0, time.UTC), event.Tokens{Output: 1},
			Quote{}},
	} {
		if got := c.Price(tt.provider, tt.model, tt.tier, tt.at, tt.tokens, false); got != tt.want {
			t.Errorf("Price(%s, %s, %q, %v):\n got %+v\nwant %+v", tt.provider, tt.model, tt.tier, tt.at.Format(time.DateOnly), got, tt.want)
		}
	}
}

// TestDefaultCoversModels checks that every model the starter catalogue promises is there.
func TestDefaultCoversModels(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	for provider, models := range map[string][]string{
		"openai": {"gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
			"gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "o1", "o3-mini"},
		"anthropic": {"claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4",
			"claude-3-7-sonnet", "claude-haiku-4-5", "claude-3-5-haiku"},
	} {
		for _, m := range models {
			for _, tier := range []string{"standard", "batch"} {
				q := c.Price(provider, m, tier, at, event.Tokens{Input: 1, Output: 1}, false)
				if !q.Priced || q.Model != m || !strings.HasSuffix(q.Version, "/"+tier) || q.Cost <= 0 {
					t.Errorf("%s/%s %s: %+v", provider, m, tier, q)
				}
			}
		}
	}
}

func TestPriceDoesNotAllocate(t *testing.T) {
	c := acmeCatalog(t)
	for _, model := range []string{"m1", "ACME/M1-Alias", "m1-20250601", "unknown"} {
		if n := testing.AllocsPerRun(100, func() { c.Price("Acme", model, "batch", june, mixed, false) }); n != 0 {
			t.Errorf("Price(%q) allocates %v times", model, n)
		}
	}
}

func BenchmarkPrice(b *testing.B) {
	c, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, bc := range []struct{ name, provider, model, tier string }{
		{"match=exact", "openai", "gpt-4o", ""},
		{"match=prefixed-uppercase", "OpenAI", "openai/GPT-4o", "batch"},
		{"match=snapshot", "anthropic", "claude-sonnet-4-5-20250929", "batch"},
		{"match=none", "openai", "gpt-unknown-2025-01-01", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.Price(bc.provider, bc.model, bc.tier, at, mixed, false)
			}
		})
	}
}
