package pricing

import (
	"reflect"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// voice prices every unit class with round numbers. Per token, in PicoUSD: input 2.5e6,
// cached 1.25e6, output 10e6, reasoning 10e6, audio input 40e6, audio output 80e6; per
// unit: a web search 1e10 (batch 5e9), a 1024x1024 high image 1.67e11, any other image 4e10,
// a request 5e9 and a "high" request 1.2e10. quiet prices no unit at all.
const voice = `
provider: acme
models:
  - model: voice
    prices:
      - effective: 2025-06-01
        input: "2.50"
        cached_input: "1.25"
        output: "10"
        audio_input: "40"
        audio_output: "80"
        units:
          web_search_calls: "0.01"
          image_outputs: "0.04"
          "image_outputs:1024x1024:high": "0.167"
          "requests:high": "0.012"
          requests: "0.005"
        tiers:
          batch: {input: "1.25", cached_input: "0.625", output: "5", units: {web_search_calls: "0.005"}}
  - model: quiet
    prices:
      - effective: 2025-06-01
        input: "1"
        output: "2"
`

func voiceCatalog(tb testing.TB) *Catalog {
	tb.Helper()
	c, err := New(parse(tb, "acme.yaml", voice))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestPriceUnits(t *testing.T) {
	c := voiceCatalog(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tokens := event.Tokens{Input: 1200, CachedInput: 200, Output: 300, Reasoning: 50}
	for _, tc := range []struct {
		name     string
		model    string
		tier     string
		units    event.Units
		cacheHit bool
		want     Quote
		wantUC   []UnitCost
	}{
		// No units: the token cost alone, 1000·2.5e6 + 200·1.25e6 + 300·10e6 = 5.75e9.
		{"no units", "voice", "", nil, false,
			Quote{true, "voice", "acme/voice@2025-06-01/standard", 5_750_000_000, 250_000_000}, nil},
		// Audio parts at audio rates: (1000−600)·2.5e6 + 600·40e6 + 200·1.25e6 +
		// (300−200)·10e6 + 200·80e6 = 1e9 + 24e9 + 0.25e9 + 1e9 + 16e9 = 42.25e9.
		{"audio", "voice", "", event.Units{"audio_input_tokens": 600, "audio_output_tokens": 200}, false,
			Quote{true, "voice", "acme/voice@2025-06-01/standard", 42_250_000_000, 250_000_000},
			[]UnitCost{{"audio_input_tokens", 600, 24_000_000_000}, {"audio_output_tokens", 200, 16_000_000_000}}},
		// Units on top of the tokens: 5.75e9 + 3·1e10 + 2·1.67e11 + 1·4e10 (the class price for
		// a size it does not list) + 1·1.2e10 + 4·5e9 = 5.75e9 + 30e9 + 334e9 + 40e9 + 12e9 + 20e9.
		{"units", "voice", "", event.Units{"web_search_calls": 3, "image_outputs:1024x1024:high": 2,
			"image_outputs:512x512:low": 1, "requests:high": 1, "requests": 4}, false,
			Quote{true, "voice", "acme/voice@2025-06-01/standard", 441_750_000_000, 250_000_000},
			[]UnitCost{{"image_outputs:1024x1024:high", 2, 334_000_000_000}, {"image_outputs:512x512:low", 1, 40_000_000_000},
				{"requests", 4, 20_000_000_000}, {"requests:high", 1, 12_000_000_000}, {"web_search_calls", 3, 30_000_000_000}}},
		// A tier's unit price: 1000·1.25e6 + 200·0.625e6 + 300·5e6 + 2·5e9 = 12.875e9.
		{"batch", "voice", "batch", event.Units{"web_search_calls": 2}, false,
			Quote{true, "voice", "acme/voice@2025-06-01/batch", 12_875_000_000, 125_000_000},
			[]UnitCost{{"web_search_calls", 2, 10_000_000_000}}},
		// A cache hit costs nothing and saves all: 5.75e9 + 1e10.
		{"cache hit", "voice", "", event.Units{"web_search_calls": 1}, true,
			Quote{true, "voice", "acme/voice@2025-06-01/standard", 0, 15_750_000_000},
			[]UnitCost{{"web_search_calls", 1, 0}}},
		// A key the row does not price leaves the call unpriced, never free.
		{"unpriced unit", "quiet", "", event.Units{"web_search_calls": 1}, false, Quote{}, nil},
		// Audio without audio prices costs what text costs: 1200·1e6 + 300·2e6 = 1.8e9.
		{"audio at text rates", "quiet", "", event.Units{"audio_input_tokens": 1000, "audio_output_tokens": 250}, false,
			Quote{true, "quiet", "acme/quiet@2025-06-01/standard", 1_800_000_000, 0},
			[]UnitCost{{"audio_input_tokens", 1000, 1_000_000_000}, {"audio_output_tokens", 250, 500_000_000}}},
		// A class price covers its variants, a variant price never its class.
		{"variant only", "voice", "", event.Units{"requests:low": 1}, false,
			Quote{true, "voice", "acme/voice@2025-06-01/standard", 10_750_000_000, 250_000_000},
			[]UnitCost{{"requests:low", 1, 5_000_000_000}}},
		// Beyond event.Units' rules: no quote.
		{"audio beyond input", "voice", "", event.Units{"audio_input_tokens": 1001}, false, Quote{}, nil},
		{"audio beyond output", "voice", "", event.Units{"audio_output_tokens": 251}, false, Quote{}, nil},
		{"count beyond limit", "voice", "", event.Units{"web_search_calls": event.MaxUnitCount + 1}, false, Quote{}, nil},
		{"negative count", "voice", "", event.Units{"web_search_calls": -1}, false, Quote{}, nil},
		{"unknown key", "voice", "", event.Units{"searches": 1}, false, Quote{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, uc := c.PriceUnits("acme", tc.model, tc.tier, at, tokens, tc.units, tc.cacheHit)
			if q != tc.want {
				t.Errorf("PriceUnits() = %+v, want %+v", q, tc.want)
			}
			if !reflect.DeepEqual(uc, tc.wantUC) {
				t.Errorf("unit costs = %+v, want %+v", uc, tc.wantUC)
			}
		})
	}
}

// TestPriceUnitsLargest checks that the dearest call the rules allow is priced exactly:
// 2·10^8 tokens at the highest token price and 16 keys of 10,000 units at 10 USD.
func TestPriceUnitsLargest(t *testing.T) {
	src := `
provider: acme
models:
  - model: dear
    prices:
      - effective: 2025-01-01
        input: "5000"
        output: "5000"
        audio_input: "5000"
        audio_output: "5000"
        units: {image_outputs: "10", requests: "10", web_search_calls: "10"}
`
	c, err := New(parse(t, "acme.yaml", src))
	if err != nil {
		t.Fatal(err)
	}
	units := event.Units{"audio_input_tokens": 50_000_000, "audio_output_tokens": 50_000_000}
	for i := range 14 {
		units["image_outputs:"+string(rune('a'+i))] = event.MaxUnitCount
	}
	tokens := event.Tokens{Input: 100_000_000, Output: 100_000_000}
	q, _ := c.PriceUnits("acme", "dear", "", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), tokens, units, false)
	// 2e8·5e9 + 14·1e4·1e13 = 1e18 + 1.4e18.
	if want := pricefile.PicoUSD(2_400_000_000_000_000_000); !q.Priced || q.Cost != want {
		t.Fatalf("PriceUnits() = %+v, want cost %d", q, want)
	}
}

func TestVersionCoversUnits(t *testing.T) {
	v := voiceCatalog(t).Version()
	for _, key := range []string{"web_search_calls", "audio_input_tokens"} {
		f := parse(t, "acme.yaml", voice)
		f.Models[0].Prices[0].Standard.Units[key]++
		c, err := New(f)
		if err != nil {
			t.Fatal(err)
		}
		if c.Version() == v {
			t.Errorf("changing the price of %s kept the version %s", key, v)
		}
	}
}

func TestPriceWithoutUnitsDoesNotAllocate(t *testing.T) {
	c := voiceCatalog(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tokens := event.Tokens{Input: 1200, Output: 300}
	if n := testing.AllocsPerRun(100, func() { c.PriceUnits("acme", "voice", "", at, tokens, nil, false) }); n != 0 {
		t.Errorf("PriceUnits without units allocates %v times, want 0", n)
	}
}

// TestShippedUnitPrices pins the shipped catalogue's unit prices, worked out by hand.
func TestShippedUnitPrices(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		provider, model string
		tokens          event.Tokens
		units           event.Units
		want            pricefile.PicoUSD
	}{
		// 1000·3e6 + 500·15e6 + 3 searches·1e10 = 3e9 + 7.5e9 + 30e9.
		{"anthropic", "claude-sonnet-4-5", event.Tokens{Input: 1000, Output: 500}, event.Units{"web_search_calls": 3}, 40_500_000_000},
		// (1000−800)·2.5e6 + 800·40e6 + (500−400)·10e6 + 400·80e6 = 0.5e9 + 32e9 + 1e9 + 32e9.
		{"openai", "gpt-4o-audio-preview", event.Tokens{Input: 1000, Output: 500},
			event.Units{"audio_input_tokens": 800, "audio_output_tokens": 400}, 65_500_000_000},
		// 100·5e6 + one high 1024x1024 image at 0.167 USD.
		{"openai", "gpt-image-1", event.Tokens{Input: 100}, event.Units{"image_outputs:1024x1024:high": 1}, 167_500_000_000},
		// Two HD 1792x1024 images at 0.12 USD.
		{"openai", "dall-e-3", event.Tokens{}, event.Units{"image_outputs:1792x1024:hd": 2}, 240_000_000_000},
		// 1000·1.25e6 + 100·10e6 + 2 searches·1e10.
		{"openai", "gpt-5", event.Tokens{Input: 1000, Output: 100}, event.Units{"web_search_calls": 2}, 22_250_000_000},
		// The preview tool of a non-reasoning model: 1000·2.5e6 + 1·2.5e10.
		{"openai", "gpt-4o", event.Tokens{Input: 1000}, event.Units{"web_search_calls:preview": 1}, 27_500_000_000},
		// A high-context search: 1000·2.5e6 + 1·5e10.
		{"openai", "gpt-4o-search-preview", event.Tokens{Input: 1000}, event.Units{"web_search_calls:high": 1}, 52_500_000_000},
		// (1000−600)·0.3e6 + 600·1e6 + 100·2.5e6 + one grounded prompt at 0.035 USD.
		{"google", "gemini-2.5-flash", event.Tokens{Input: 1000, Output: 100},
			event.Units{"audio_input_tokens": 600, "web_search_calls": 1}, 35_970_000_000},
	} {
		q, _ := c.PriceUnits(tc.provider, tc.model, "", at, tc.tokens, tc.units, false)
		if !q.Priced || q.Cost != tc.want {
			t.Errorf("%s/%s %v: %+v, want cost %d", tc.provider, tc.model, tc.units, q, tc.want)
		}
	}
	// A unit the model's row does not price: unpriced, never free.
	if q, _ := c.PriceUnits("openai", "dall-e-3", "", at, event.Tokens{}, event.Units{"image_outputs:4096x4096:hd": 1}, false); q.Priced {
		t.Errorf("an image size DALL-E 3 does not sell was priced: %+v", q)
	}
}
