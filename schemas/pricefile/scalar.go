package pricefile

import (
	"time"

	"github.com/goccy/go-yaml/ast"
)

// Scalar is a YAML scalar kept exactly as written, for readers of other price files
// (genai-prices) that must not let the decoder turn 2.50 into a float or 2024-10-01 into a
// time. Set is false for an absent or null value; anything else is kept as its text.
type Scalar struct {
	Text string
	Set  bool
}

// UnmarshalYAML implements yaml.NodeUnmarshaler, as pricing files read their prices.
func (s *Scalar) UnmarshalYAML(n ast.Node) error {
	var l literal
	if err := l.UnmarshalYAML(n); err != nil {
		return err
	}
	*s = Scalar{Text: l.text, Set: l.set}
	return nil
}

// RowAt returns the row of m in force at t, or its first row when none is yet (a model
// listed before its release): the row tools show and compare for "now".
func (m Model) RowAt(t time.Time) Price {
	row := m.Prices[0]
	for _, p := range m.Prices {
		if !p.Effective.After(t) {
			row = p
		}
	}
	return row
}
