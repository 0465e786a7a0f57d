package budget

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/kv"
)

// FuzzRecord feeds any value of the budget bucket to an enforcer: it never panics; a record
// caps a scope only when it decodes as a hard-capped record within its period whose scope
// names the tag (compared normalised); Decide never modifies the tags it is given; and a
// refusal is text a client can be shown. A workflow cap matches only the event's workflow id
// (here the same string as the team tag), and a record of an unknown kind caps nothing.
func FuzzRecord(f *testing.F) {
	good, _ := json.Marshal(kv.Budget{Name: "search-monthly", Scope: "team=search", PeriodEnd: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		LimitUSD: "100", SpentUSD: "105", State: kv.StateHardCapped, Policy: kv.PolicyRefuse})
	f.Add("search-monthly", good, "search")
	f.Add("b", []byte(`{"scope":"team=Search ","state":"hard_capped","policy":"flag"}`), "search")
	f.Add("c", []byte(`{"scope":"team=","state":"hard_capped"}`), "")
	f.Add("d", []byte(`{"scope":"=x","state":"hard_capped","period_end":"2000-01-01T00:00:00Z"}`), "x")
	f.Add("e", []byte(`{"scope":"team=s","state":"ok"}`), "s")
	f.Add("f", []byte(`{"scope":12}`), "s")
	f.Add("g", []byte(`not json`), "s")
	f.Add("h", []byte(`{"scope":"workflow_id=s","state":"hard_capped","kind":"workflow"}`), "s")
	f.Add("i", []byte(`{"scope":"team=s","state":"hard_capped","kind":"session"}`), "s")
	f.Add("j", []byte(`{"scope":"team=s","state":"hard_capped","kind":"workflow"}`), "s")
	now := time.Date(2026, 11, 15, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, key string, value []byte, team string) {
		e := NewEnforcer(func() time.Time { return now }, nil)
		e.apply(key, jetstream.KeyValuePut, value)
		tags := map[string]string{"team": team, "env": "prod"}
		before := maps.Clone(tags)
		r, over := e.Over(tags, team)
		var rec kv.Budget
		decoded := json.Unmarshal(value, &rec) == nil
		if over {
			k, v, ok := strings.Cut(rec.Scope, "=")
			switch {
			case !decoded || rec.State != kv.StateHardCapped:
				t.Fatalf("capped by %q, which is not a hard-capped record", value)
			case rec.Kind != kv.KindBudget && rec.Kind != kv.KindWorkflow:
				t.Fatalf("capped by a record of unknown kind %q", rec.Kind)
			case rec.Kind == kv.KindWorkflow && (k != kv.WorkflowScope || v != team || team == ""):
				t.Fatalf("workflow cap %q caps workflow %q", rec.Scope, team)
			case rec.Kind == kv.KindWorkflow:
			case !ok || (k != "team" && k != "env"):
				t.Fatalf("capped by scope %q, which names no tag of %v", rec.Scope, tags)
			case !rec.PeriodEnd.IsZero() && !now.Before(rec.PeriodEnd):
				t.Fatalf("capped by a record whose period ended at %s", rec.PeriodEnd)
			case event.NormalizeTag(tags[k], event.NormalizedTagLen) != event.NormalizeTag(v, event.NormalizedTagLen):
				t.Fatalf("scope %q caps tags %v", rec.Scope, tags)
			}
			_ = Refusal(r)
		}
		out, refusal := e.Decide(tags, team)
		if !maps.Equal(tags, before) {
			t.Fatalf("Decide modified its tags: %v -> %v", before, tags)
		}
		switch {
		case !over && (refusal != "" || !maps.Equal(out, tags)):
			t.Fatalf("no cap, but refused %q or tags %v", refusal, out)
		case over && r.Policy == kv.PolicyFlag && out[kv.FlagTag] != r.Name:
			t.Fatalf("flag policy, tags %v", out)
		case over && r.Policy != kv.PolicyFlag && refusal == "":
			t.Fatalf("refuse policy, no refusal")
		}
		e.apply(key, jetstream.KeyValueDelete, nil)
		if _, over := e.Over(tags, team); over {
			t.Fatalf("still capped after the record was deleted")
		}
	})
}
