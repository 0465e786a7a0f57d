package stream

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

var outcomeTime = time.Date(2026, 11, 20, 9, 30, 0, 250_000_000, time.UTC)

// TestOutcomeID pins the derived id: changing it would store an outcome sent before and
// after an upgrade twice.
func TestOutcomeID(t *testing.T) {
	if got, want := OutcomeID("wf-1", "resolved", outcomeTime), "db9750de059b318e1f25aa1186d61eb2"; got != want {
		t.Errorf("OutcomeID() = %q, want %q (sha256 of wf-1 NUL resolved NUL 2026-11-20T09:30:00.250Z)", got, want)
	}
	// The same instant in another zone, and below the millisecond, is the same outcome.
	paris := outcomeTime.In(time.FixedZone("CET", 3600)).Add(400 * time.Microsecond)
	if OutcomeID("wf-1", "resolved", paris) != OutcomeID("wf-1", "resolved", outcomeTime) {
		t.Error("OutcomeID depends on the time zone or on sub-millisecond digits")
	}
	// The separator keeps field boundaries: ("wf-1r", "esolved") is another outcome.
	for _, other := range []string{
		OutcomeID("wf-1r", "esolved", outcomeTime),
		OutcomeID("wf-1", "resolved", outcomeTime.Add(time.Millisecond)),
		OutcomeID("wf-2", "resolved", outcomeTime),
	} {
		if other == OutcomeID("wf-1", "resolved", outcomeTime) {
			t.Errorf("two different outcomes share the id %s", other)
		}
	}
	if got, want := OutcomesMsgID([]Outcome{{ID: "a"}, {ID: "b"}}), "outcomes:8fb20ef63ced4145fc2e983ffe597d1d"; got != want {
		t.Errorf("OutcomesMsgID() = %q, want %q", got, want)
	}
}

func TestOutcomesRoundTrip(t *testing.T) {
	in := []Outcome{
		{ID: "o-1", WorkflowID: "wf-1", Outcome: "resolved", Time: outcomeTime, ReceivedAt: outcomeTime.Add(time.Second)},
		{ID: "o-2", WorkflowID: "ticket ☃ 4711", Outcome: "escalated", Time: outcomeTime.Add(time.Hour), ReceivedAt: outcomeTime.Add(time.Hour)},
	}
	data, err := EncodeOutcomes(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"o-1","workflow_id":"wf-1","outcome":"resolved","time":"2026-11-20T09:30:00.25Z","received_at":"2026-11-20T09:30:01.25Z"}` + "\n" +
		`{"id":"o-2","workflow_id":"ticket ☃ 4711","outcome":"escalated","time":"2026-11-20T10:30:00.25Z","received_at":"2026-11-20T10:30:00.25Z"}` + "\n"
	if string(data) != want {
		t.Errorf("EncodeOutcomes() =\n%s\nwant\n%s", data, want)
	}
	out, err := DecodeOutcomes(data)
	if err != nil {
		t.Fatalf("DecodeOutcomes() error = %v", err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("DecodeOutcomes() = %+v, want %+v", out, in)
	}
}

func TestDecodeOutcomesRefuses(t *testing.T) {
	const ok = `{"id":"o","workflow_id":"w","outcome":"resolved","time":"2026-11-20T09:30:00Z"}`
	for _, tc := range []struct{ name, data, want string }{
		{"empty", "", "outcomes message holds no outcome"},
		{"blank lines", "\n \n", "outcomes message holds no outcome"},
		{"not JSON", "garbage", "outcomes line 1: invalid character 'g' looking for beginning of value"},
		{"second line broken", ok + "\n{", "outcomes line 2: unexpected EOF"},
		{"unknown field", `{"id":"o","workflow_id":"w","outcome":"r","time":"2026-11-20T09:30:00Z","cost":1}`, `outcomes line 1: json: unknown field "cost"`},
		{"trailing data", ok + "{}", "outcomes line 1: more after the JSON object"},
		{"no id", `{"workflow_id":"w","outcome":"r","time":"2026-11-20T09:30:00Z"}`, "outcomes line 1: id is empty"},
		{"no workflow", `{"id":"o","outcome":"r","time":"2026-11-20T09:30:00Z"}`, "outcomes line 1: workflow_id is empty"},
		{"no outcome", `{"id":"o","workflow_id":"w","time":"2026-11-20T09:30:00Z"}`, "outcomes line 1: outcome is empty"},
		{"no time", `{"id":"o","workflow_id":"w","outcome":"r"}`, "outcomes line 1: time is missing"},
		{"bad time", `{"id":"o","workflow_id":"w","outcome":"r","time":"yesterday"}`, `outcomes line 1: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
		{"array", `[` + ok + `]`, "outcomes line 1: json: cannot unmarshal array into Go value of type stream.Outcome"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := DecodeOutcomes([]byte(tc.data))
			if err == nil || err.Error() != tc.want {
				t.Errorf("DecodeOutcomes(%q) = %v, %v; want error %q", tc.data, out, err, tc.want)
			}
		})
	}
	// A big payload of many outcomes decodes whole.
	many := strings.Repeat(ok+"\n", 10_000)
	if out, err := DecodeOutcomes([]byte(many)); err != nil || len(out) != 10_000 {
		t.Errorf("DecodeOutcomes(10,000 lines) = %d outcomes, %v", len(out), err)
	}
}

func FuzzDecodeOutcomes(f *testing.F) {
	f.Add([]byte(`{"id":"o","workflow_id":"w","outcome":"resolved","time":"2026-11-20T09:30:00Z","received_at":"2026-11-20T09:30:01Z"}` + "\n"))
	f.Add([]byte("{\n}"))
	f.Add([]byte(`{"id":"\u0000","workflow_id":"\ud800","outcome":"x","time":"2026-11-20T09:30:00+14:00"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := DecodeOutcomes(data)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same outcomes.
		again, err := EncodeOutcomes(nil, out)
		if err != nil {
			t.Fatalf("EncodeOutcomes() of decoded outcomes: %v", err)
		}
		back, err := DecodeOutcomes(again)
		if err != nil {
			t.Fatalf("DecodeOutcomes(EncodeOutcomes(x)) error = %v\n%s", err, again)
		}
		if len(back) != len(out) {
			t.Fatalf("round trip: %d outcomes, want %d", len(back), len(out))
		}
		for i := range out {
			if back[i].ID != out[i].ID || back[i].WorkflowID != out[i].WorkflowID || back[i].Outcome != out[i].Outcome || !back[i].Time.Equal(out[i].Time) {
				t.Fatalf("round trip: outcome %d = %+v, want %+v", i, back[i], out[i])
			}
		}
	})
}
