package proxy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestAttribute(t *testing.T) {
	b, err := ParseBindings([]byte(`{"keys":[{"sha256":"` + strings.ToUpper(hash(boundKey)) + `","tags":{"team":"payments"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	f := func(h http.Header, want attribution) {
		t.Helper()
		got := attribute(h, b)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("attribute(%v) =\n %+v\nwant\n %+v", h, got, want)
		}
	}
	f(http.Header{}, attribution{})
	f(http.Header{
		"X-Tokenmeter-Team":        {"search"},
		"X-Tokenmeter-Traffic":     {"robots"},                 // not user|background
		"X-Tokenmeter-Tag-A_B":     {"x"},                      // '_' is fine, as is
		"X-Tokenmeter-Tag-Ünicode": {"x"},                      // not [a-z0-9_.-]
		"X-Tokenmeter-Env":         {strings.Repeat("e", 257)}, // too long
		"X-Tokenmeter-Feature":     {"a\x01b"},                 // control character
		"X-Tokenmeter-Workflow-Id": {"w-1"},
	}, attribution{tags: map[string]string{"team": "search", "a_b": "x"}, workflowID: "w-1", dropped: 4})
	f(http.Header{"Authorization": {"Bearer " + boundKey}, "X-Tokenmeter-Team": {"search"}},
		attribution{tags: map[string]string{"team": "payments"}, binding: "unnamed", dropped: 1})
	f(http.Header{"Authorization": {"bearer  " + boundKey + " "}}, attribution{tags: map[string]string{"team": "payments"}, binding: "unnamed"})
	f(http.Header{"Api-Key": {boundKey}}, attribution{tags: map[string]string{"team": "payments"}, binding: "unnamed"})
	f(http.Header{"Authorization": {"Basic " + boundKey}}, attribution{})

	// Too many tags: the binding's are kept, the headers' trimmed to the limit.
	h := http.Header{"X-Api-Key": {boundKey}}
	for i := 0; i < 40; i++ {
		h.Set("X-Tokenmeter-Tag-K"+strings.Repeat("x", i), "v")
	}
	got := attribute(h, b)
	if len(got.tags) != 32 || got.tags["team"] != "payments" || got.dropped != 9 {
		t.Errorf("%d tags, team %q, %d dropped; want 32, payments, 9", len(got.tags), got.tags["team"], got.dropped)
	}
}

func TestStripHeaders(t *testing.T) {
	h := http.Header{"X-Tokenmeter-Team": {"a"}, "X-Tokenmeter-Whatever": {"b"}, "X-Tokenmeterx": {"c"}, "Authorization": {"d"}}
	stripHeaders(h)
	if want := (http.Header{"X-Tokenmeterx": {"c"}, "Authorization": {"d"}}); !reflect.DeepEqual(h, want) {
		t.Errorf("after stripping: %v, want %v", h, want)
	}
}

func TestParseBindingsErrors(t *testing.T) {
	_, err := ParseBindings([]byte(`{"keys":[
		{"sha256":"abc","tags":{"team":"a"}},
		{"sha256":"` + hash("k1") + `","name":"one","tags":{"team":"a"}},
		{"sha256":"` + hash("k1") + `","name":"again","tags":{"team":"b"}},
		{"sha256":"` + hash("k2") + `","name":"untagged"},
		{"sha256":"` + hash("k3") + `","name":"bad","tags":{"Team":"a","traffic":"bots"}}
	]}`))
	for _, w := range []string{
		`keys[0]: sha256 "abc" is not 64 hex digits`,
		"keys[2]: sha256 " + hash("k1") + " is bound twice",
		"keys[3] (untagged): no tags",
		`keys[4] (bad): tag key "Team" may only contain`,
		`keys[4] (bad): tag traffic: "bots" is not one of user, background`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("ParseBindings() = %v, want it to contain %q", err, w)
		}
	}
	if _, err := ParseBindings([]byte(`{"keys":[],"extra":1}`)); err == nil || !strings.Contains(err.Error(), `unknown field "extra"`) {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := LoadBindings("testdata/does-not-exist.json"); err == nil || !strings.Contains(err.Error(), "load key bindings") {
		t.Errorf("missing file: %v", err)
	}
	b, err := LoadBindings("testdata/keys.json")
	if err != nil || b.Len() != 2 {
		t.Fatalf("testdata/keys.json: %d keys, %v", b.Len(), err)
	}
	bd, ok := b.Lookup(http.Header{"Authorization": {"Bearer sk-example-search"}})
	if !ok || !reflect.DeepEqual(bd, Binding{Name: "search-prod", Tags: map[string]string{"team": "search", "cost_center": "cc-42"}}) {
		t.Errorf("lookup: %+v, %v", bd, ok)
	}
}
