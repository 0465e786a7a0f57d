package enrich

import (
	"reflect"
	"testing"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

func TestSetUnitCosts(t *testing.T) {
	f := func(units []batch.Unit, costs []pricing.UnitCost, want []batch.Unit) {
		t.Helper()
		r := batch.Row{Units: units}
		setUnitCosts(&r, costs)
		if !reflect.DeepEqual(r.Units, want) {
			t.Errorf("units = %+v, want %+v", r.Units, want)
		}
	}
	f([]batch.Unit{{Key: "audio_input_tokens", Count: 800}, {Key: "web_search_calls", Count: 3}},
		[]pricing.UnitCost{{Key: "audio_input_tokens", Count: 800, Cost: 32_000_000_000}, {Key: "web_search_calls", Count: 3, Cost: 30_000_000_000}},
		[]batch.Unit{{Key: "audio_input_tokens", Count: 800, CostPico: 32_000_000_000}, {Key: "web_search_calls", Count: 3, CostPico: 30_000_000_000}})
	// Unpriced (no unit costs): every unit costs 0, whatever a redelivered row said before.
	f([]batch.Unit{{Key: "requests", Count: 1, CostPico: 5}}, nil, []batch.Unit{{Key: "requests", Count: 1}})
	f(nil, nil, nil)
}
