package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/rules"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// call is one call of a synthetic spike: tokens, cost at list prices and the share of it paid
// (the rest saved by caching), in thousandths.
type call struct {
	tokens, listPico, paidMilli int64
	prompt                      string
}

// TestExplainNamesEachKindOfSpike: a team spends the same for five minutes — 10 calls a
// minute, 1,000 tokens each, $0.01 each at list price, 80 % paid (provider caching) — and then,
// for five minutes, makes more calls, larger calls, calls to a costlier model, calls the cache
// no longer serves, or both of the first and the last. The page splits the increase into
// exactly those causes.
func TestExplainNamesEachKindOfSpike(t *testing.T) {
	steady := call{1000, usd / 100, 800, "summarize@v7"}
	for _, tc := range []struct {
		name  string
		calls int
		spike call
		want  string // factor:increase:share, volume size mix cache
	}{
		{"four times the calls", 40, steady, "volume:1200000000000:100000 size:0:0 mix:0:0 cache:0:0"},
		{"four times the tokens per call", 10, call{4000, 4 * usd / 100, 800, "summarize@v7"}, "volume:0:0 size:1200000000000:100000 mix:0:0 cache:0:0"},
		{"a model four times as dear", 10, call{1000, 4 * usd / 100, 800, "summarize@v7"}, "volume:0:0 size:0:0 mix:1200000000000:100000 cache:0:0"},
		{"the cache stops answering", 10, call{1000, usd / 100, 1000, "summarize@v7"}, "volume:0:0 size:0:0 mix:0:0 cache:100000000000:100000"},
		// $0.40 → $1.00: twice the calls, and 100 % paid instead of 80 %. LMDI: L = 0.6 /
		// ln 2.5; volume L·ln 2 = $0.453882478420, cache L·ln 1.25 = $0.146117521580.
		{"twice the calls and no cache", 20, call{1000, usd / 100, 1000, "summarize@v7"}, "volume:453882478420:75647 size:0:0 mix:0:0 cache:146117521580:24352"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rules.Rule{Name: "spend", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"},
				Window: 5 * time.Minute, Above: 41 * usd / 100, ResolvePercent: 90}
			e := New([]rules.Rule{r}, nil)
			add := func(m int, c call) {
				paid := c.listPico * c.paidMilli / 1000
				e.Add(&batch.Row{Time: monday.Add(time.Duration(m)*time.Minute + 7*time.Second), Team: "search", Model: "gpt-4o",
					Feature: "chat", PromptVersion: c.prompt, Priced: true, CostPico: paid, SavingsPico: c.listPico - paid,
					Tokens: event.Tokens{Input: c.tokens * 4 / 5, Output: c.tokens / 5}})
			}
			for m := range 5 {
				for range 10 {
					add(m, steady)
				}
			}
			for m := 5; m < 10; m++ {
				for range tc.calls {
					add(m, tc.spike)
				}
			}
			res := e.Evaluate(monday.Add(9*time.Minute + 50*time.Second)) // the window is minutes 5 to 9
			if len(res) != 1 || res[0].Verdict != Hold {
				t.Fatalf("results = %+v, want one hold", res)
			}
			var got string
			var sum int64
			for i, c := range res[0].Causes {
				if i > 0 {
					got += " "
				}
				got += fmt.Sprintf("%s:%d:%d", c.Factor, c.Increase, c.ShareMilli)
				sum += c.Increase
			}
			if got != tc.want {
				t.Errorf("causes = %s\nwant     %s", got, tc.want)
			}
			if increase := res[0].Value - 40*usd/100; sum != increase {
				t.Errorf("the causes sum to %d, want the increase %d exactly", sum, increase)
			}
		})
	}
}

// A prompt version first seen in the spike's window is named as new, with its first minute;
// one seen before is not, however much it grew.
func TestExplainNamesAPromptVersionFirstSeen(t *testing.T) {
	r := rules.Rule{Name: "spend", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"},
		Window: 5 * time.Minute, Above: usd, ResolvePercent: 90}
	e := New([]rules.Rule{r}, nil)
	add := func(m int, prompt string, cents int64) {
		e.Add(&batch.Row{Time: monday.Add(time.Duration(m) * time.Minute), Team: "search", Model: "gpt-4o", Feature: "chat",
			PromptVersion: prompt, Priced: true, CostPico: cents * usd / 100, Tokens: event.Tokens{Input: 100, Output: 10}})
	}
	for m := range 7 {
		add(m, "summarize@v7", 10)
	}
	add(7, "summarize@v8", 300)
	add(8, "summarize@v8", 300)
	res := e.Evaluate(monday.Add(9*time.Minute + 15*time.Second))
	if len(res) != 1 {
		t.Fatalf("results = %+v", res)
	}
	var got []string
	for _, c := range res[0].Contributors {
		if c.Dimension == "prompt_version" {
			got = append(got, fmt.Sprintf("%s new=%v first=%s", c.Value, c.New, c.FirstSeen.Format("15:04")))
		}
	}
	if want := "[summarize@v8 new=true first=00:07 summarize@v7 new=false first=00:00]"; fmt.Sprint(got) != want {
		t.Errorf("prompt versions = %v, want %s", got, want)
	}
}

// Without calls, tokens or a list price in either window there is nothing to split by.
func TestExplainNeedsBothWindows(t *testing.T) {
	r := rules.Rule{Name: "spend", Kind: rules.Threshold, Measure: rules.Cost, GroupBy: []string{"team"},
		Window: 5 * time.Minute, Above: usd, ResolvePercent: 90}
	e := New([]rules.Rule{r}, nil)
	e.Add(&batch.Row{Time: monday.Add(7 * time.Minute), Team: "search", Model: "gpt-4o", Priced: true, CostPico: 2 * usd,
		Tokens: event.Tokens{Input: 100, Output: 10}})
	res := e.Evaluate(monday.Add(9*time.Minute + 15*time.Second))
	if len(res) != 1 || res[0].Causes != nil {
		t.Fatalf("results = %+v, want one, with no causes (nothing before the window)", res)
	}
}
