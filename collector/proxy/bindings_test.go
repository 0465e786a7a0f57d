package proxy

import (
	"net/http"
	"reflect"
	"testing"
)

// A key that lists the teams it may charge lets X-Tokenmeter-Team choose among them, and
// only among them: the proxy cannot refuse a call, so another team is replaced.
func TestAttributeTeamsKey(t *testing.T) {
	b, err := ParseBindings([]byte(`{"keys":[
		{"sha256":"` + hash("sk-platform") + `","name":"platform","tags":{"team":"platform","cost_center":"cc-1"},"teams":["platform","search"]},
		{"sha256":"` + hash("sk-shared") + `","name":"shared","teams":["a","b"]}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := func(key, team string, want attribution) {
		t.Helper()
		h := http.Header{"Authorization": {"Bearer " + key}}
		if team != "" {
			h.Set(HeaderTeam, team)
		}
		if got := attribute(h, b); !reflect.DeepEqual(got, want) {
			t.Errorf("attribute(%s, team %q) =\n %+v\nwant\n %+v", key, team, got, want)
		}
	}
	f("sk-platform", "search", attribution{tags: map[string]string{"team": "search", "cost_center": "cc-1"}, binding: "platform"})
	f("sk-platform", "SEARCH", attribution{tags: map[string]string{"team": "search", "cost_center": "cc-1"}, binding: "platform", dropped: 1})
	f("sk-platform", "", attribution{tags: map[string]string{"team": "platform", "cost_center": "cc-1"}, binding: "platform"})
	f("sk-platform", "payments", attribution{tags: map[string]string{"team": "platform", "cost_center": "cc-1"}, binding: "platform", dropped: 1})
	f("sk-shared", "b", attribution{tags: map[string]string{"team": "b"}, binding: "shared"})
	f("sk-shared", "payments", attribution{tags: map[string]string{"team": Unallocated}, binding: "shared", dropped: 1})
	f("sk-shared", "", attribution{tags: map[string]string{}, binding: "shared"})
	// The registry's binding is not changed by a lookup.
	bd, _ := b.Lookup(http.Header{"Authorization": {"Bearer sk-platform"}, HeaderTeam: {"search"}})
	again, _ := b.Lookup(http.Header{"Authorization": {"Bearer sk-platform"}})
	if bd.Tags["team"] != "search" || again.Tags["team"] != "platform" {
		t.Errorf("lookups share tags: %v, %v", bd.Tags, again.Tags)
	}
}
