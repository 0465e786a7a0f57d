package keys

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

func hash(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

func TestLoad(t *testing.T) {
	r, err := Load("testdata/keys.json")
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 2 {
		t.Fatalf("%d keys, want 2", r.Len())
	}
	f := func(key string, want Key, wantOK bool) {
		t.Helper()
		got, ok := r.Lookup(key)
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v, %v", key, got, ok, want, wantOK)
		}
	}
	f("sk-search", Key{Name: "search-prod", Tags: map[string]string{"team": "search", "cost_center": "cc-42", "owner": "alice"}}, true)
	f("sk-platform", Key{Name: "platform-batch", Tags: map[string]string{"team": "platform", "traffic": "background"},
		Teams: []string{"platform", "search", "support"}}, true)
	f("sk-search ", Key{}, false) // keys are compared exactly: the caller trims
	f("", Key{}, false)
	plain := map[string]string{"search-prod": "sk-search", "platform-batch": "sk-platform"}
	seen := map[string]bool{}
	for h, k := range r.All() {
		if hex.EncodeToString(h[:]) != hash(plain[k.Name]) {
			t.Errorf("All yielded hash %x for %s, want the hash of %s", h, k.Name, plain[k.Name])
		}
		seen[k.Name] = true
	}
	if len(seen) != 2 {
		t.Errorf("All yielded %v, want both keys", seen)
	}
	var empty *Registry
	if _, ok := empty.Lookup("sk-search"); ok || empty.Len() != 0 {
		t.Error("a nil registry holds keys")
	}
	if _, err := Load("testdata/missing.json"); err == nil || !strings.HasPrefix(err.Error(), "load API keys: ") {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	_, err := Parse([]byte(`{"keys":[
		{"sha256":"abc","tags":{"team":"a"}},
		{"sha256":"` + hash("k1") + `","name":"one","tags":{"team":"a"}},
		{"sha256":"` + strings.ToUpper(hash("k1")) + `","name":"again","tags":{"team":"b"}},
		{"sha256":"` + hash("k2") + `","name":"untagged"},
		{"sha256":"` + hash("k3") + `","name":"bad","tags":{"Team":"a","traffic":"bots"}},
		{"sha256":"` + hash("k4") + `","name":"teams","tags":{"team":"ops"},"teams":["search","Search","","a\u0001"]},
		{"sha256":"` + hash("k5") + `","name":"a\u0007b","teams":["x"]}
	]}`))
	want := strings.Join([]string{
		`keys[0]: sha256 "abc" is not 64 hex digits`,
		"keys[2]: sha256 " + strings.ToUpper(hash("k1")) + " is bound twice",
		"keys[3] (untagged): no tags",
		`keys[4] (bad): tag key "Team" may only contain a-z, 0-9, '_', '.' and '-'`,
		`keys[4] (bad): tag traffic: "bots" is not one of user, background`,
		`keys[5] (teams): teams[1]: team "Search" is listed twice`,
		`keys[5] (teams): teams[2] is empty`,
		`keys[5] (teams): teams[3]: tag team: the value must be at most 256 bytes of UTF-8 without control characters`,
		`keys[5] (teams): tags.team "ops" is not one of its teams (search, Search, , a` + "\x01" + `)`,
		`keys[6]: name "a\ab" must be at most 256 bytes of printable UTF-8`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Parse() error =\n%v\nwant\n%s", err, want)
	}
	for in, want := range map[string]string{
		`{"keys":[],"extra":1}`: `decode: json: unknown field "extra"`,
		`{"keys":[]} {}`:        "decode: more than one JSON value",
		`[`:                     "decode: unexpected EOF",
		`{"keys":[{"sha256":"` + hash("k") + `","tags":{"team":"a"},"teams":"a"}]}`: "decode: json: cannot unmarshal string into Go struct field .keys.teams of type []string",
	} {
		if _, err := Parse([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("Parse(%s) = %v, want %s", in, err, want)
		}
	}
	if r, err := Parse([]byte(`{"keys":[]}`)); err != nil || r.Len() != 0 {
		t.Errorf("no keys: %d, %v", r.Len(), err)
	}
}

func TestTeamAndCharge(t *testing.T) {
	fixed := Key{Name: "search-prod", Tags: map[string]string{"team": "search", "cost_center": "cc-42"}}
	listed := Key{Name: "platform", Tags: map[string]string{"team": "platform"}, Teams: []string{"platform", "search"}}
	listedNoDefault := Key{Name: "shared", Teams: []string{"a", "b"}}
	open := Key{Name: "cc-only", Tags: map[string]string{"cost_center": "cc-1"}}
	f := func(k Key, tags, want map[string]string, wantErr string) {
		t.Helper()
		before := map[string]string{}
		for key, v := range tags {
			before[key] = v
		}
		got, err := k.Charge(tags)
		switch {
		case wantErr != "":
			if err == nil || err.Error() != wantErr {
				t.Errorf("%s.Charge(%v) error = %v, want %s", k.Name, tags, err, wantErr)
			}
		case err != nil || !reflect.DeepEqual(got, want):
			t.Errorf("%s.Charge(%v) = %v, %v; want %v", k.Name, tags, got, err, want)
		}
		if !reflect.DeepEqual(tags, before) && tags != nil {
			t.Errorf("Charge modified its input: %v", tags)
		}
	}
	f(fixed, nil, map[string]string{"team": "search", "cost_center": "cc-42"}, "")
	f(fixed, map[string]string{"team": " Search ", "cost_center": "cc-99", "feature": "chat"},
		map[string]string{"team": "search", "cost_center": "cc-42", "feature": "chat"}, "")
	f(fixed, map[string]string{"team": "payments"}, nil,
		`tags.team: the API key "search-prod" may not charge team "payments" (it may charge search)`)
	f(listed, map[string]string{"team": "SEARCH"}, map[string]string{"team": "search"}, "")
	f(listed, map[string]string{}, map[string]string{"team": "platform"}, "")
	f(listed, map[string]string{"team": "support"}, nil,
		`tags.team: the API key "platform" may not charge team "support" (it may charge platform, search)`)
	f(listedNoDefault, map[string]string{"env": "prod"}, map[string]string{"env": "prod"}, "")
	f(listedNoDefault, map[string]string{"team": " "}, map[string]string{}, "")
	f(listedNoDefault, map[string]string{"team": "b"}, map[string]string{"team": "b"}, "")
	f(listedNoDefault, map[string]string{"team": strings.Repeat("z", 100)}, nil,
		`tags.team: the API key "shared" may not charge team "`+strings.Repeat("z", 64)+`…" (it may charge a, b)`)
	f(open, map[string]string{"team": "anyone"}, map[string]string{"team": "anyone", "cost_center": "cc-1"}, "")
}
