package collect

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

const testPolicy = `
default:
  required: [team]
  policy: unallocated
envs:
  prod:
    required: [team, feature]
    policy: reject
  dev:
    required: []
  staging:
    policy: reject
`

func TestTagPolicyApply(t *testing.T) {
	p, err := ParseTagPolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	f := func(tags, want map[string]string, wantFilled []string, wantEnv, wantErr string) {
		t.Helper()
		got, filled, env, err := p.Apply(tags)
		switch {
		case wantErr != "":
			if err == nil || err.Error() != wantErr {
				t.Errorf("Apply(%v) error = %v, want %s", tags, err, wantErr)
			}
		case err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(filled, wantFilled) || env != wantEnv:
			t.Errorf("Apply(%v) = %v, %v, %q, %v; want %v, %v, %q", tags, got, filled, env, err, want, wantFilled, wantEnv)
		}
	}
	f(map[string]string{"team": "search", "feature": "chat", "env": "prod"},
		map[string]string{"team": "search", "feature": "chat", "env": "prod"}, nil, "prod", "")
	f(map[string]string{"team": "search", "env": " Prod"}, nil, nil, "",
		`tags: missing feature (the tag policy requires team, feature in env "prod")`)
	f(map[string]string{"team": " ", "env": "prod"}, nil, nil, "",
		`tags: missing team, feature (the tag policy requires team, feature in env "prod")`)
	f(map[string]string{"env": "staging"}, nil, nil, "", `tags: missing team (the tag policy requires team in env "staging")`)
	f(map[string]string{"env": "dev"}, map[string]string{"env": "dev"}, nil, "dev", "")
	f(nil, map[string]string{"team": "unallocated"}, []string{"team"}, "default", "")
	f(map[string]string{"env": "qa", "feature": "x"}, map[string]string{"env": "qa", "feature": "x", "team": "unallocated"}, []string{"team"}, "default", "")
	f(map[string]string{"env": "qa", "team": "ops"}, map[string]string{"env": "qa", "team": "ops"}, nil, "default", "")

	// Apply never modifies its input.
	in := map[string]string{"env": "qa"}
	if _, _, _, _ = p.Apply(in); !reflect.DeepEqual(in, map[string]string{"env": "qa"}) {
		t.Errorf("Apply modified its input: %v", in)
	}
}

func TestTagPolicyDefaults(t *testing.T) {
	for _, tc := range []struct{ name, file, wantErr string }{
		{"empty file", "", ""},
		{"default only", "default: {policy: reject}", `tags: missing team (the tag policy requires team by default)`},
		{"env inherits", "default: {required: [team, env], policy: reject}\nenvs: {prod: {policy: unallocated}}", "tags: missing team, env (the tag policy requires team, env by default)"},
	} {
		p, err := ParseTagPolicy([]byte(tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, _, _, err := p.Apply(map[string]string{"feature": "x"})
		if tc.wantErr == "" {
			if want := map[string]string{"feature": "x", "team": "unallocated"}; err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %v, %v; want %v", tc.name, got, err, want)
			}
		} else if err == nil || err.Error() != tc.wantErr {
			t.Errorf("%s: error = %v, want %s", tc.name, err, tc.wantErr)
		}
	}
	p, err := ParseTagPolicy([]byte("default: {required: [team, env], policy: reject}\nenvs: {prod: {policy: unallocated}}"))
	if err != nil {
		t.Fatal(err)
	}
	got, filled, env, err := p.Apply(map[string]string{"env": "prod"})
	if want := map[string]string{"env": "prod", "team": "unallocated"}; err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(filled, []string{"team"}) || env != "prod" {
		t.Errorf("inherited required tags: %v, %v, %q, %v; want %v", got, filled, env, err, want)
	}
}

func TestParseTagPolicyErrors(t *testing.T) {
	f := func(file, want string) {
		t.Helper()
		_, err := ParseTagPolicy([]byte(file))
		if err == nil || err.Error() != want {
			t.Errorf("ParseTagPolicy(%q) error =\n%v\nwant\n%s", file, err, want)
		}
	}
	f(`
default: {required: [team, Team, team], policy: drop}
envs:
  Prod: {required: [team]}
  prod: {required: [traffic, feature], policy: unallocated}
  qa: {required: [traffic], policy: reject}
`, strings.Join([]string{
		`default.policy: "drop" is not reject or unallocated`,
		`default.required[1]: tag key "Team" may only contain a-z, 0-9, '_', '.' and '-'`,
		`default.required[2]: team is listed twice`,
		`envs: env "Prod" must be 1 to 64 characters of a-z, 0-9, '_', '.', '-' (events' env tags are compared lower-cased)`,
		`envs.prod.required[0]: traffic cannot be required under policy unallocated: its only values are user and background`,
	}, "\n"))
	f("default: {required: [team]}\nunknown: 1", "decode: [2:1] unknown field \"unknown\"\n   1 | default: {required: [team]}\n>  2 | unknown: 1\n       ^\n")
	f("default: [", "decode: [1:10] sequence end token ']' not found\n>  1 | default: [\n                ^\n")
	f(strings.Repeat("#", maxPolicyFile+1), "1048577 bytes, more than 1048576")
	many := make([]string, 33)
	for i := range many {
		many[i] = "t" + strings.Repeat("x", i)
	}
	f("default: {required: ["+strings.Join(many, ", ")+"]}", "default.required: 33 tags, more than the 32 an event may carry")
}

// FuzzParseTagPolicy checks that any policy file either is refused with an error or yields a
// policy under which every event it accepts carries valid tags with every required one set.
func FuzzParseTagPolicy(f *testing.F) {
	f.Add([]byte(testPolicy), "prod", "")
	f.Add([]byte("default: {required: [team, feature]}"), "", "x")
	f.Add([]byte("envs: {qa: {required: [traffic], policy: reject}}"), "qa", "user")
	f.Add([]byte("default: ["), "", "")
	f.Add([]byte("envs: {a: {required: [b]}}\nenvs: {}"), "a", "")
	f.Fuzz(func(t *testing.T, data []byte, env, team string) {
		p, err := ParseTagPolicy(data)
		if err != nil {
			return
		}
		tags := map[string]string{"env": env, "team": team}
		got, _, _, err := p.Apply(tags)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "tags: missing ") {
				t.Fatalf("Apply error %v", err)
			}
			return
		}
		for _, k := range p.rule(env).required {
			if strings.TrimSpace(got[k]) == "" {
				t.Fatalf("required tag %s is missing from %v", k, got)
			}
		}
		for k, v := range got {
			if k == "env" || k == "team" {
				continue // the fuzzer's own values, not the policy's
			}
			if err := normalize.CheckTag(k, v); err != nil {
				t.Fatalf("the policy set an invalid tag: %v", err)
			}
		}
		if len(got) > event.DefaultLimits.MaxTags+2 {
			t.Fatalf("%d tags", len(got))
		}
	})
}
