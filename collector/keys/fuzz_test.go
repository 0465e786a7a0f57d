package keys

import (
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
)

// FuzzParse checks that any registry file either loads with only valid tags and teams, each
// key's bound team among its teams, or is refused with an error, never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"keys":[{"sha256":"` + hash("k") + `","name":"n","tags":{"team":"a"},"teams":["a","b"]}]}`))
	f.Add([]byte(`{"keys":[{"sha256":"zz","tags":{}}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		for _, k := range r.All() {
			for key, v := range k.Tags {
				if err := normalize.CheckTag(key, v); err != nil {
					t.Fatalf("loaded an invalid tag: %v", err)
				}
			}
			for _, team := range k.Teams {
				if team == "" || normalize.CheckTag("team", team) != nil {
					t.Fatalf("loaded an invalid team %q", team)
				}
			}
			if len(k.Teams) > 0 && k.Tags["team"] != "" {
				if _, ok := k.Team(k.Tags["team"]); !ok {
					t.Fatalf("the bound team %q is not allowed", k.Tags["team"])
				}
			}
		}
	})
}

// FuzzCharge checks that whatever team an event names, Charge either refuses it or charges a
// team the key allows, with every bound tag set.
func FuzzCharge(f *testing.F) {
	f.Add("search", "cc-9", true)
	f.Add(" SUPPORT", "", false)
	f.Add("", "x", true)
	f.Add("\xff", "\x00", false)
	f.Fuzz(func(t *testing.T, team, costCenter string, listed bool) {
		k := Key{Name: "k", Tags: map[string]string{"team": "search", "cost_center": "cc-1"}}
		if listed {
			k.Teams = []string{"search", "support"}
		}
		got, err := k.Charge(map[string]string{"team": team, "cost_center": costCenter})
		if err != nil {
			if !strings.HasPrefix(err.Error(), `tags.team: the API key "k" may not charge team `) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if got["cost_center"] != "cc-1" {
			t.Fatalf("the bound cost centre was overridden: %v", got)
		}
		if got["team"] != "search" && !(listed && got["team"] == "support") {
			t.Fatalf("charged team %q", got["team"])
		}
	})
}
