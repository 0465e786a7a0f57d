package rules

import (
	"os"
	"testing"
	"time"
)

// FuzzParse: any input either parses into a file whose rules all validate, or is refused
// with an error; it never panics.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"good.yaml", "conf.every-mistake.yaml", "conf.unknown-field.yaml", "inhibit.yaml"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("rules:\n  - {name: a, kind: threshold, above: '0.1'}\n"))
	f.Add([]byte("aliases: !00\n0:0"))
	f.Add([]byte("rules:\n  - {name: r, kind: runaway, factor: '5', min_usd: '10', window: 6h, days: 7, min_workflows: 3, cap: true}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz", data)
		if err != nil {
			if file != nil {
				t.Fatal("Parse returned a file and an error")
			}
			return
		}
		for _, r := range file.Rules {
			if r.Name == "" || r.Kind == "" || r.ResolvePercent < 1 || r.ResolvePercent > 100 || r.Window <= 0 {
				t.Fatalf("accepted rule is invalid: %+v", r)
			}
			if (r.Kind == Change || r.Kind == Anomaly) && r.FactorMilli < 1000 {
				t.Fatalf("accepted factor below 1: %+v", r)
			}
		}
		for _, r := range file.Runaways {
			if r.Name == "" || r.FactorMilli < 1000 || r.MinPico < 0 || r.Window < time.Minute || r.Days < 1 || r.MinWorkflows < 1 {
				t.Fatalf("accepted runaway rule is invalid: %+v", r)
			}
		}
		for _, b := range file.Budgets {
			if b.LimitPico <= 0 || (b.Policy != PolicyRefuse && b.Policy != PolicyFlag) {
				t.Fatalf("accepted budget is invalid: %+v", b)
			}
		}
	})
}

// FuzzParseMatcher: a matcher either is refused or prints (String) as a matcher that parses
// back to the same one; it never panics.
func FuzzParseMatcher(f *testing.F) {
	for _, s := range []string{`alertname="team_spike"`, `team=~"search|support"`, `severity != critical`, `a!~".*"`, `x="\"q\""`, `=x`, `a="`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMatcher(s)
		if err != nil {
			return
		}
		back, err := parseMatcher(m.String())
		if err != nil {
			t.Fatalf("%q parsed as %s, which does not parse: %v", s, m, err)
		}
		if back.Name != m.Name || back.Op != m.Op || back.Value != m.Value {
			t.Fatalf("%q parsed as %s, which parses back as %s", s, m, back)
		}
	})
}
