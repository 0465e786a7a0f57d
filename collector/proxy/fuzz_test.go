package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// FuzzAttribute checks that whatever attribution headers a client sends, the tags the proxy
// puts on an event are valid v1 tags, within the limit, and the binding's tags always win.
func FuzzAttribute(f *testing.F) {
	b, err := ParseBindings([]byte(`{"keys":[{"sha256":"` + hash(boundKey) + `","tags":{"team":"payments","cost_center":"cc-7"}}]}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("X-Tokenmeter-Team", "search", "Bearer "+boundKey)
	f.Add("X-Tokenmeter-Tag-Region", "eu\x00", "")
	f.Add("X-Tokenmeter-Traffic", "user", "Bearer x")
	f.Add("X-Tokenmeter-Tag-", "v", "")
	f.Add("X-Tokenmeter-Workflow-Id", "\xff", "")
	f.Fuzz(func(t *testing.T, name, value, auth string) {
		h := http.Header{}
		h[http.CanonicalHeaderKey(name)] = []string{value}
		h["X-Tokenmeter-Tag-"+http.CanonicalHeaderKey(strings.TrimPrefix(name, "x"))] = []string{value}
		h.Set("Authorization", auth)
		a := attribute(h, b)
		if len(a.tags) > event.DefaultLimits.MaxTags {
			t.Fatalf("%d tags", len(a.tags))
		}
		u := event.Usage{ID: "e", Provider: "p", Model: "m", Tags: a.tags, WorkflowID: a.workflowID, PromptVersion: a.promptVersion}
		now := u.Time
		u.Normalize(now)
		if err := u.Validate(u.Time, event.DefaultLimits); err != nil {
			t.Fatalf("attribute(%q: %q) gives an invalid event: %v", name, value, err)
		}
		if _, ok := b.Lookup(h); ok && (a.tags["team"] != "payments" || a.tags["cost_center"] != "cc-7") {
			t.Fatalf("a header overrode the binding: %v", a.tags)
		}
	})
}

// FuzzParseBindings checks that any bindings file either loads with only valid tags or is
// refused with an error, never a panic.
func FuzzParseBindings(f *testing.F) {
	f.Add([]byte(`{"keys":[{"sha256":"` + hash("k") + `","name":"n","tags":{"team":"a"}}]}`))
	f.Add([]byte(`{"keys":[{"sha256":"zz","tags":{}}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBindings(data)
		if err != nil {
			return
		}
		for _, bd := range b.byHash {
			for k, v := range bd.Tags {
				if err := checkTag(k, v); err != nil {
					t.Fatalf("loaded an invalid tag: %v", err)
				}
			}
		}
	})
}
