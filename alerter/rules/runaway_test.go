package rules

import (
	"reflect"
	"testing"
	"time"
)

func TestParseRunaway(t *testing.T) {
	f, err := Parse("r.yaml", []byte(`
rules:
  - name: runaway-agents
    kind: runaway
    factor: "5"
    min_usd: "10"
    window: 6h
    min_workflows: 30
    cap: true
    severity: page
    labels: {owner: platform}
  - name: runaway-defaults
    kind: runaway
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Runaway{
		{Name: "runaway-agents", FactorMilli: 5000, MinPico: 10 * PicoPerUSD, Window: 6 * time.Hour, Days: 7, MinWorkflows: 30, Cap: true,
			KeepFiringFor: 5 * time.Minute, Severity: "page", Labels: map[string]string{"owner": "platform"}},
		{Name: "runaway-defaults", FactorMilli: 5000, Window: 24 * time.Hour, Days: 7, MinWorkflows: 20, KeepFiringFor: 5 * time.Minute, Severity: "warning"},
	}
	if !reflect.DeepEqual(f.Runaways, want) {
		t.Errorf("runaways = %+v\nwant %+v", f.Runaways, want)
	}
	for _, r := range f.Rules {
		if r.Kind == RunawayKind {
			t.Errorf("runaway rule %s among the engine's rules", r.Name)
		}
	}
}

func TestParseRunawayErrors(t *testing.T) {
	_, err := Parse("r.yaml", []byte(`
rules:
  - name: bad
    kind: runaway
    measure: requests
    group_by: [team]
    factor: "0.5"
    window: 169h
    min_workflows: -1
    for: 5m
    labels: {workflow_id: x}
  - name: bad
    kind: threshold
    above: "1"
    cap: true
`))
	want := `r.yaml: rules[0] "bad": measure: a runaway rule measures cost, not "requests"
r.yaml: rules[0] "bad": group_by: not a field of a runaway rule (it fires per workflow, by feature, on the first evaluation over the level)
r.yaml: rules[0] "bad": for: not a field of a runaway rule (it fires per workflow, by feature, on the first evaluation over the level)
r.yaml: rules[0] "bad": labels: "workflow_id" is set by the alerter itself
r.yaml: rules[0] "bad": factor: 0.5 is outside [1, 1000]
r.yaml: rules[0] "bad": window: 169h0m0s is outside [1m0s, 168h0m0s]
r.yaml: rules[0] "bad": min_workflows: -1 is below 1
r.yaml: rules[1] "bad": cap: not a field of a threshold rule
r.yaml: rules[1]: name "bad" is used twice`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error:\n%v\nwant:\n%s", err, want)
	}
}
