// Package prometheus holds tokenmeter.rules.yml, alert rules for the pipeline's own health;
// this test checks them against what the pipeline exports.
package prometheus

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/tokenmeter/tokenmeter/deploy/standalone"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// descPattern reads a metric's name and variable labels from prometheus.Desc.String().
var descPattern = regexp.MustCompile(`^Desc\{fqName: "([^"]+)".*variableLabels: \{([^}]*)\}\}$`)

// TestRulesUseExportedMetrics: every rule parses as PromQL, names a metric the running
// pipeline (tokenmeter run) registers, with label names that metric has; its `for` is a
// duration; it has a severity (page or warning), a summary and a description; names are
// unique.
func TestRulesUseExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("tokenmeter.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		t.Fatal(err)
	}

	conn := chtest.Conn(t)
	db := chtest.Database(t, conn)
	ctx, cancel := context.WithCancel(context.Background())
	reg := prom.NewRegistry()
	p, err := standalone.Start(ctx, standalone.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", ClickHouseDSN: chtest.DSN(),
		Database: db, Partitions: 2, Streams: stream.DefaultOptions, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		if err := p.Wait(); err != nil {
			t.Errorf("pipeline stopped with: %v", err)
		}
	}()
	testkit.Eventually(t, time.Minute, "the pipeline ready", func() bool { return p.Ready() == nil })
	exported := map[string][]string{} // metric → its label names
	descs := make(chan *prom.Desc)
	go func() { reg.Describe(descs); close(descs) }()
	for d := range descs {
		m := descPattern.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		var labels []string
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		exported[m[1]] = labels
	}
	if len(exported["tokenmeter_stream_consumer_pending_messages"]) != 2 {
		t.Fatalf("the stream collector is not registered: %v", exported)
	}

	seen := map[string]bool{}
	n := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			n++
			where := g.Name + "/" + r.Alert
			if !strings.HasPrefix(r.Alert, "Tokenmeter") || seen[r.Alert] {
				t.Errorf("%s: alert names start with Tokenmeter and are unique", where)
			}
			seen[r.Alert] = true
			if r.For != "" {
				if _, err := model.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", where, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "page" && s != "warning" {
				t.Errorf("%s: severity %q, want page or warning", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description are both required", where)
			}
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			for _, sel := range parser.ExtractSelectors(expr) {
				var name string
				var labels []string
				for _, m := range sel {
					if m.Name == model.MetricNameLabel {
						name = m.Value
					} else {
						labels = append(labels, m.Name)
					}
				}
				has, ok := exported[name]
				if !ok {
					t.Errorf("%s: metric %q is not exported", where, name)
					continue
				}
				for _, l := range labels {
					if !slices.Contains(has, l) {
						t.Errorf("%s: metric %s has no label %q (it has %v)", where, name, l, has)
					}
				}
			}
			// Labels the rule groups or formats by must exist too.
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if a, ok := node.(*parser.AggregateExpr); ok && !a.Without {
					for _, l := range a.Grouping {
						if !anyHas(exported, a.Expr, l) {
							t.Errorf("%s: groups by %q, which none of its metrics has", where, l)
						}
					}
				}
				return nil
			})
		}
	}
	if n < 12 {
		t.Errorf("%d rules, want the 12 or more the file documents", n)
	}
}

// anyHas reports whether a metric selected under node has label l.
func anyHas(exported map[string][]string, node parser.Node, l string) bool {
	for _, sel := range parser.ExtractSelectors(node.(parser.Expr)) {
		for _, m := range sel {
			if m.Name == model.MetricNameLabel && slices.Contains(exported[m.Value], l) {
				return true
			}
		}
	}
	return false
}
