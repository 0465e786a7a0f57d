package attribute

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

const rulesSrc = `
defaults:
  team: Unallocated
  env: unknown
services:
  - service: Checkout API
    team: Payments
    cost_center: CC-1234
    owner: " alice@example.com "
  - service: search-indexer
    team: search
    force: true
`

func rules(t testing.TB) *Rules {
	t.Helper()
	r, err := Parse("attribution.yaml", []byte(rulesSrc))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNormalize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"payments", "payments"},
		{"  Payments Team ", "payments-team"},
		{"Payments--Team", "payments--team"}, // '-' is allowed as written
		{"a / b", "a-b"},
		{"--x--", "x"},
		{"Équipe", "quipe"}, // non-ASCII bytes are dropped
		{"!!!", ""},
		{"", ""},
		{"team.eu_1", "team.eu_1"},
		{strings.Repeat("a", 70), strings.Repeat("a", 64)},
		{strings.Repeat("a", 63) + " b", strings.Repeat("a", 63)}, // cut, then the trailing '-' goes
	} {
		if got := Normalize(tt.in, 64); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestApply(t *testing.T) {
	r := rules(t)
	for _, tt := range []struct {
		name    string
		in      batch.Row
		want    batch.Row
		changed bool
	}{
		{"defaults fill the gaps",
			batch.Row{Feature: "chat"},
			batch.Row{Team: "unallocated", Feature: "chat", Env: "unknown"}, true},
		{"normalised, nothing else to do",
			batch.Row{Team: " Search ", Env: "PROD", CostCenter: "CC 7"},
			batch.Row{Team: "search", Env: "prod", CostCenter: "cc-7"}, true},
		{"already clean",
			batch.Row{Team: "search", Env: "prod"},
			batch.Row{Team: "search", Env: "prod"}, false},
		{"service fills team, cost centre and owner",
			batch.Row{Env: "prod", ExtraTags: []batch.Tag{{Key: "region", Value: "eu"}, {Key: "service", Value: "checkout-api"}}},
			batch.Row{Team: "payments", Env: "prod", CostCenter: "cc-1234",
				ExtraTags: []batch.Tag{{Key: "owner", Value: "alice@example.com"}, {Key: "region", Value: "eu"}, {Key: "service", Value: "checkout-api"}}}, true},
		{"service does not override what the event says",
			batch.Row{Team: "growth", Env: "prod", ExtraTags: []batch.Tag{{Key: "owner", Value: "bob"}, {Key: "service", Value: "Checkout API"}}},
			batch.Row{Team: "growth", Env: "prod", CostCenter: "cc-1234", ExtraTags: []batch.Tag{{Key: "owner", Value: "bob"}, {Key: "service", Value: "Checkout API"}}}, true},
		{"a forced service wins",
			batch.Row{Team: "growth", Env: "prod", ExtraTags: []batch.Tag{{Key: "service", Value: "search-indexer"}}},
			batch.Row{Team: "search", Env: "prod", ExtraTags: []batch.Tag{{Key: "service", Value: "search-indexer"}}}, true},
		{"unknown service: defaults",
			batch.Row{ExtraTags: []batch.Tag{{Key: "service", Value: "other"}}},
			batch.Row{Team: "unallocated", Env: "unknown", ExtraTags: []batch.Tag{{Key: "service", Value: "other"}}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			row := tt.in
			row.ExtraTags = append([]batch.Tag(nil), tt.in.ExtraTags...)
			changed := r.Apply(&row).Changed
			if !reflect.DeepEqual(row, tt.want) || changed != tt.changed {
				t.Errorf("Apply:\n got %+v (changed %v)\nwant %+v (changed %v)", row, changed, tt.want, tt.changed)
			}
		})
	}
	// No owner tag is added to an event already at the tag limit.
	full := batch.Row{Team: "x", Env: "prod"}
	for i := 0; i < 26; i++ {
		full.ExtraTags = append(full.ExtraTags, batch.Tag{Key: "k" + string(rune('a'+i)), Value: "v"})
	}
	full.ExtraTags = append(full.ExtraTags, batch.Tag{Key: "service", Value: "checkout-api"})
	r.Apply(&full)
	if len(full.ExtraTags) != 27 {
		t.Errorf("owner added beyond the tag limit: %d tags", len(full.ExtraTags))
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"unknown field", "defaults: {tam: x}", `a.yaml: [1:12] unknown field "tam"`},
		{"unknown capped tag", "max_values: {teams: 10, feature: 0}", "a.yaml: max_values: feature 0: want 1 to 1000000\n" +
			`a.yaml: max_values: "teams": not a capped tag (want team, feature, env, cost_center)`},
		{"bad service tag", "service_tag: Service Name", `a.yaml: service_tag "Service Name": not a tag key (want [a-z0-9_.-], at most 64 bytes)`},
		{"max length", "max_length: 0", "a.yaml: max_length 0: want 1 to 256"},
		{"default normalises to nothing", `defaults: {team: "!!"}`, `a.yaml: defaults: team "!!": nothing left after normalisation`},
		{"service missing", "services: [{team: a}]", "a.yaml: service #1: service: missing"},
		{"service twice", "services: [{service: A B, team: a}, {service: a-b, team: b}]", `a.yaml: service "a-b": listed twice (as "a-b" after normalisation)`},
		{"service gives nothing", "services: [{service: a}]", `a.yaml: service "a": gives no team, cost_center or owner`},
		{"owner too long", "services: [{service: a, owner: " + strings.Repeat("o", 257) + "}]", `a.yaml: service "a": owner longer than 256 bytes`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("a.yaml", []byte(tt.src))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestCardinalityCap(t *testing.T) {
	r, err := Parse("a.yaml", []byte("max_values: {feature: 2}\ndefaults: {feature: none}"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var folded int
	for _, f := range []string{"a", "b", "c", "A", "", "other", "b", "d"} {
		row := batch.Row{Feature: f}
		res := r.Apply(&row)
		got = append(got, row.Feature)
		folded += len(res.Folded)
	}
	// "a" and "b" fill the cap; the default "none" is a value like any other, so the empty
	// feature folds too; "other" is always kept.
	want := []string{"a", "b", "other", "a", "other", "other", "b", "other"}
	if strings.Join(got, ",") != strings.Join(want, ",") || folded != 3 {
		t.Errorf("features %v (folded %d), want %v (folded 3)", got, folded, want)
	}
	// Caps are per tag: team is not capped here.
	row := batch.Row{Team: "t1", Feature: "a"}
	if res := r.Apply(&row); row.Team != "t1" || res.Folded != nil {
		t.Errorf("uncapped team: %+v, %+v", row, res)
	}
}

// FuzzParse checks that no rules file panics the parser, and that an accepted one applies to
// any event without producing an unnormalised attribution.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rulesSrc), "Team X", "svc")
	f.Add([]byte("service_tag: svc\nmax_length: 3\nservices: [{service: abcdef, team: xyz, force: true}]"), "", "ABCDEF")
	f.Add([]byte("defaults: &a {team: *a}"), "t", "s")
	f.Fuzz(func(t *testing.T, data []byte, team, service string) {
		r, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Errorf("error does not name the file: %q", err)
			}
			return
		}
		row := batch.Row{Team: team, ExtraTags: []batch.Tag{{Key: r.serviceTag, Value: service}}}
		r.Apply(&row)
		for _, v := range []string{row.Team, row.Feature, row.Env, row.CostCenter} {
			if Normalize(v, r.maxLength) != v {
				t.Errorf("Apply left %q unnormalised", v)
			}
		}
	})
}
