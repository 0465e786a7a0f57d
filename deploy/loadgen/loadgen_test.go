package loadgen

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	json "github.com/goccy/go-json"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// testNow is a fixed clock: 15:00 UTC, so the default day of traffic starts in the afternoon
// of the day before.
var testNow = time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC)

func generate(tb testing.TB, cfg Config, n int) []Item {
	tb.Helper()
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v", err)
	}
	g := New(cfg)
	items := make([]Item, n)
	for i := range items {
		items[i] = g.Next()
	}
	return items
}

func TestDeterministic(t *testing.T) {
	cfg := DefaultConfig(testNow)
	cfg.Seed = 7
	a := NDJSON(generate(t, cfg, 20_000))
	b := NDJSON(generate(t, cfg, 20_000))
	if !bytes.Equal(a, b) {
		t.Fatalf("two generators with seed 7 produced different bytes (%d and %d bytes)", len(a), len(b))
	}
	cfg.Seed = 8
	if c := NDJSON(generate(t, cfg, 20_000)); bytes.Equal(a, c) {
		t.Fatal("seeds 7 and 8 produced the same bytes")
	}
}

func TestShares(t *testing.T) {
	cfg := DefaultConfig(testNow)
	const n = 100_000
	items := generate(t, cfg, n)

	var kinds [3]int
	var unknown, late, valid int
	var newest time.Time
	ids := make(map[string]bool)
	for i, it := range items {
		kinds[it.Kind]++
		if it.Kind != Valid {
			continue
		}
		valid++
		if ids[it.Event.ID] {
			t.Fatalf("item %d: valid event reuses id %s", i, it.Event.ID)
		}
		ids[it.Event.ID] = true
		if it.Event.Model == UnknownModel {
			unknown++
		}
		// On-time events advance monotonically; a late one lies at least LateMin behind.
		switch tm := it.Event.Time; {
		case tm.After(newest):
			newest = tm
		case tm.Before(newest.Add(-cfg.LateMin / 2)):
			late++
		}
	}
	check := func(name string, got int, want float64) {
		t.Helper()
		if math.Abs(float64(got)-want) > 0.15*want {
			t.Errorf("%s: got %d, want %.0f ± 15%%", name, got, want)
		}
	}
	check("duplicates", kinds[Duplicate], cfg.DuplicateShare*n)
	check("invalid", kinds[Invalid], cfg.InvalidShare*n)
	check("unknown models", unknown, cfg.UnknownModelShare*float64(valid))
	check("late", late, cfg.LateShare*float64(valid))
	if got := kinds[Valid] + kinds[Duplicate] + kinds[Invalid]; got != n {
		t.Errorf("kinds add up to %d, want %d", got, n)
	}
}

// TestValidEvents checks the events against the contract, and that the wire form decodes to
// exactly the event the generator reports.
func TestValidEvents(t *testing.T) {
	cfg := DefaultConfig(testNow)
	items := generate(t, cfg, 20_000)
	models := make(map[string]bool)
	var cached, write1h, reasoning, batch, workflows int
	for i, it := range items {
		if it.Kind == Invalid {
			continue
		}
		u := it.Event
		if err := u.Validate(testNow, event.DefaultLimits); err != nil {
			t.Fatalf("item %d (%s): %v", i, it.JSON, err)
		}
		normalized := u
		normalized.Normalize(testNow)
		if !reflect.DeepEqual(normalized, u) {
			t.Fatalf("item %d is not normalized:\n got %+v\nwant %+v", i, u, normalized)
		}
		if u.Time.After(testNow) {
			t.Fatalf("item %d: time %s is after now %s", i, u.Time, testNow)
		}
		models[u.Model] = true
		if u.Usage.CachedInput > 0 {
			cached++
		}
		if u.Usage.CacheWrite1h > 0 {
			write1h++
		}
		if u.Usage.Reasoning > 0 {
			reasoning++
		}
		if u.ServiceTier == event.TierBatch {
			batch++
			if u.Tags[event.TagTraffic] != "background" {
				t.Fatalf("item %d: batch tier on %s traffic", i, u.Tags[event.TagTraffic])
			}
		}
		if u.WorkflowID != "" {
			workflows++
		}
	}
	for _, name := range []string{"gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929", "o3", "claude-3-5-haiku", UnknownModel} {
		if !models[name] {
			t.Errorf("model %s never appears in 20000 items", name)
		}
	}
	if len(models) < 20 {
		t.Errorf("only %d distinct model names", len(models))
	}
	for name, n := range map[string]int{"cached input": cached, "1h cache writes": write1h,
		"reasoning": reasoning, "batch tier": batch, "workflow ids": workflows} {
		if n < 100 {
			t.Errorf("%s: only %d of 20000 events", name, n)
		}
	}

	for _, format := range []struct {
		name, contentType string
		body              []byte
	}{
		{"ndjson", event.ContentNDJSON, NDJSON(items)},
		{"array", event.ContentJSON, JSONArray(items)},
	} {
		got, err := event.Decode(format.body, format.contentType, testNow, event.DefaultLimits, len(items))
		if err != nil {
			t.Fatalf("%s: decode: %v", format.name, err)
		}
		var want []event.Usage
		var rejected []int
		for i, it := range items {
			if it.Kind == Invalid {
				rejected = append(rejected, i)
			} else {
				want = append(want, it.Event)
			}
		}
		if !reflect.DeepEqual(got.Events, want) {
			t.Errorf("%s: decoded events differ from the generated ones", format.name)
		}
		if len(got.Rejected) != len(rejected) {
			t.Fatalf("%s: %d rejections, want %d", format.name, len(got.Rejected), len(rejected))
		}
		for i, r := range got.Rejected {
			if r.Index != rejected[i] {
				t.Errorf("%s: rejection %d is for index %d, want %d", format.name, i, r.Index, rejected[i])
			}
		}
	}
}

// TestInvalidEvents checks that every invalid item is rejected on its own, with the error of
// the rule it breaks, and that every rule is used.
func TestInvalidEvents(t *testing.T) {
	cfg := DefaultConfig(testNow)
	cfg.InvalidShare = 0.2
	items := generate(t, cfg, 5_000)
	n := 0
	for i, it := range items {
		if it.Kind != Invalid {
			continue
		}
		rule := invalidRules[n%len(invalidRules)]
		n++
		body := append(append([]byte{'['}, it.JSON...), ']')
		got, err := event.Decode(body, event.ContentJSON, testNow, event.DefaultLimits, 10)
		if err != nil {
			t.Fatalf("item %d (%s): decode: %v", i, rule.name, err)
		}
		if len(got.Events) != 0 || len(got.Rejected) != 1 {
			t.Fatalf("item %d (%s): %d events, %d rejections; want 0 and 1\n%s",
				i, rule.name, len(got.Events), len(got.Rejected), it.JSON)
		}
		if msg := got.Rejected[0].Error; !strings.HasPrefix(msg, rule.field) {
			t.Errorf("item %d (%s): rejected with %q, want an error starting %q", i, rule.name, msg, rule.field)
		}
	}
	if n < 2*len(invalidRules) {
		t.Errorf("only %d invalid items, want every one of the %d rules used twice", n, len(invalidRules))
	}
}

func TestDuplicates(t *testing.T) {
	items := generate(t, DefaultConfig(testNow), 100_000)
	first := make(map[string]Item)
	dups := 0
	for i, it := range items {
		switch it.Kind {
		case Valid:
			first[it.Event.ID] = it
		case Duplicate:
			dups++
			orig, ok := first[it.Event.ID]
			if !ok {
				t.Fatalf("item %d: duplicate of %s, which no earlier valid item has", i, it.Event.ID)
			}
			if !bytes.Equal(it.JSON, orig.JSON) {
				t.Fatalf("item %d: duplicate JSON differs:\n got %s\nwant %s", i, it.JSON, orig.JSON)
			}
			if !reflect.DeepEqual(it.Event, orig.Event) {
				t.Fatalf("item %d: duplicate event differs from the original", i)
			}
		}
	}
	if dups == 0 {
		t.Fatal("no duplicates in 100000 items")
	}
}

// TestEncodeMatchesGoccy pins the hand-written encoder to the library's output.
func TestEncodeMatchesGoccy(t *testing.T) {
	for i, it := range generate(t, DefaultConfig(testNow), 5_000) {
		if it.Kind == Invalid {
			continue
		}
		want, err := json.Marshal(&it.Event)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(it.JSON, want) {
			t.Fatalf("item %d:\n got %s\nwant %s", i, it.JSON, want)
		}
	}
	u := event.Usage{ID: "a\"b\\c\x01", Tags: map[string]string{"k": "\n\r\t\x1f"}}
	want, _ := json.Marshal(&u)
	if got := encode(&u); !bytes.Equal(got, want) {
		t.Errorf("escaping:\n got %s\nwant %s", got, want)
	}
}

func TestDiurnal(t *testing.T) {
	cfg := DefaultConfig(testNow)
	cfg.EventsPerDay = 25_000 // 100k events cover four days
	var perHour [24]int
	for _, it := range generate(t, cfg, 100_000) {
		perHour[it.Event.Time.Hour()]++
	}
	var work, night int
	for h, n := range perHour {
		switch {
		case h >= workStart && h < workEnd:
			work += n
		case h < 6:
			night += n
		}
	}
	workRate := float64(work) / (workEnd - workStart)
	nightRate := float64(night) / 6
	if workRate < 4*nightRate {
		t.Errorf("working hours carry %.0f events per hour, night %.0f; want at least 4 times as many (per hour: %v)",
			workRate, nightRate, perHour)
	}
}

func TestSpike(t *testing.T) {
	cfg := DefaultConfig(testNow)
	start := testNow.Add(-cfg.Span) // 100k events cover about 2.4 hours from here
	cfg.Spike = Spike{Team: "support", Model: "claude-opus-4-1", From: start.Add(30 * time.Minute),
		To: start.Add(90 * time.Minute), Multiplier: 10}
	var in, out [2]int // [other, spike combination]
	for _, it := range generate(t, cfg, 100_000) {
		if it.Kind != Valid || it.Event.Time.Before(start) {
			continue // late events fall before the start
		}
		u := it.Event
		hit := 0
		if u.Tags[event.TagTeam] == "support" && strings.HasPrefix(u.Model, "claude-opus-4-1") {
			hit = 1
		}
		if !u.Time.Before(cfg.Spike.From) && u.Time.Before(cfg.Spike.To) {
			in[hit]++
		} else {
			out[hit]++
		}
	}
	ratio := (float64(in[1]) / float64(in[0])) / (float64(out[1]) / float64(out[0]))
	if math.Abs(ratio-10) > 3 {
		t.Errorf("the spike raises the combination's share by %.1f times (in window %v, outside %v), want 10 ± 3",
			ratio, in, out)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig(testNow).Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"no now", func(c *Config) { c.Now = time.Time{} }, []string{"now is not set"}},
		{"bad numbers", func(c *Config) { c.Span, c.EventsPerDay, c.Teams = 0, -1, 0 },
			[]string{"span (0s) must be positive", "events per day (-1) must be positive", "teams (0) must be within [1, 1000]"}},
		{"bad shares", func(c *Config) { c.DuplicateShare, c.InvalidShare, c.LateShare = 0.6, 0.5, 1.5 },
			[]string{"late share (1.5) must be within [0, 1]", "duplicate share (0.6) + invalid share (0.5) must be below 1"}},
		{"late bounds", func(c *Config) { c.LateMin, c.LateMax = 2*time.Hour, time.Hour },
			[]string{"0 < late min (2h0m0s) <= late max (1h0m0s)"}},
		{"too old", func(c *Config) { c.Span = 40 * 24 * time.Hour },
			[]string{"span (960h0m0s) + late max (6h0m0s) must stay below the receiver's max age (840h0m0s)"}},
		{"bad spike", func(c *Config) {
			c.Spike = Spike{Team: "nobody", Model: "gpt-9", From: testNow, To: testNow, Multiplier: 0.5}
		}, []string{`spike multiplier (0.5) must be at least 1`, `spike window [2026-03-10T15:00:00Z, 2026-03-10T15:00:00Z) is empty`,
			`spike team "nobody" is not one of the 12 generated teams`, `spike model "gpt-9" is not a base model`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig(testNow)
			c.change(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n < len(c.want) {
				t.Errorf("%d joined errors, want at least %d", n, len(c.want))
			}
		})
	}
}

func TestTally(t *testing.T) {
	orig := Item{Event: event.Usage{ID: "a", Model: "gpt-4o"}, Kind: Valid}
	dup := orig
	dup.Kind = Duplicate
	lone := Item{Event: event.Usage{ID: "b", Model: UnknownModel}, Kind: Duplicate}
	bad := Item{Event: event.Usage{ID: "c"}, Kind: Invalid}

	var tl Tally
	tl.Add(orig, bad, dup)
	tl.Add(lone) // its original was never sent, so it is the first copy the receiver sees
	if got, want := [...]int{tl.Valid, tl.Duplicates, tl.Invalid, tl.Accepted(), tl.Rejected(), tl.UnknownModel},
		[...]int{1, 2, 1, 3, 1, 1}; got != want {
		t.Errorf("valid, duplicates, invalid, accepted, rejected, unknown = %v, want %v", got, want)
	}
	var ids []string
	for _, u := range tl.Events() {
		ids = append(ids, u.ID)
	}
	if got, want := strings.Join(ids, ","), "a,b"; got != want {
		t.Errorf("unique events %s, want %s", got, want)
	}
}
