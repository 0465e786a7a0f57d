package rawbatch

import (
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tokenmeter/tokenmeter/schemas/batch"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// rows returns n events whose response ids and token counts differ as real ones do, so that
// their messages, compressed, grow with n.
func rows(n int) []batch.Row {
	now := time.Date(2026, 11, 26, 22, 41, 31, 0, time.UTC)
	out := make([]batch.Row, n)
	for i := range out {
		h := xxhash.Sum64String(strconv.Itoa(i))
		u := event.Usage{ID: fmt.Sprintf("evt-%04d", i), Time: now, Provider: "openai", Model: "gpt-4o",
			ResponseID: fmt.Sprintf("chatcmpl-%016x", h), Usage: event.Tokens{Input: int64(h % 100_000), Output: int64(h >> 48)},
			ServiceTier: "standard", Status: "ok"}
		out[i] = batch.FromUsage(&u, now, 1)
	}
	return out
}

func TestEncodeSplitsOverMaxPayload(t *testing.T) {
	rs := rows(200)
	one, err := Encode(1, rs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(one) != 1 || one[0].Events != 200 || one[0].Subject != "usage.raw.1" || one[0].ID != MsgID(one[0].Data) {
		t.Fatalf("under the max payload: %d messages (%+v), want one of 200 events on usage.raw.1", len(one), one)
	}
	limit := int64(len(one[0].Data))/3 + headerRoom
	split, err := Encode(1, rs, limit)
	if err != nil {
		t.Fatal(err)
	}
	var got []batch.Row
	for _, m := range split {
		if int64(len(m.Data))+headerRoom > limit {
			t.Errorf("a message of %d bytes exceeds the limit of %d", len(m.Data), limit)
		}
		decoded, err := batch.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if len(decoded) != m.Events {
			t.Errorf("message holds %d rows, says %d", len(decoded), m.Events)
		}
		got = append(got, decoded...)
	}
	if len(split) < 3 || !reflect.DeepEqual(got, rs) {
		t.Errorf("split into %d messages holding %d rows; want at least 3 holding the 200 rows in order", len(split), len(got))
	}
	again, _ := Encode(1, rs, limit)
	if !reflect.DeepEqual(again, split) {
		t.Error("encoding the same rows twice gave different messages: retries would not be de-duplicated")
	}
	if _, err := Encode(1, rs[:1], headerRoom+10); err == nil {
		t.Error("one event over the max payload: no error")
	}
}

// TestAppendEncoded checks that messages encoded into one buffer are the messages Encode
// makes, also when the buffer is used again and when a partition is split.
func TestAppendEncoded(t *testing.T) {
	rs := rows(200)
	var want []Message
	for _, p := range []int{0, 3} {
		m, err := Encode(p, rs, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, m...)
	}
	limit := int64(len(want[0].Data))/3 + headerRoom
	split, err := Encode(1, rs, limit)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, split...)
	var buf []byte
	for round := range 2 {
		var got []Message
		buf = buf[:0]
		for _, p := range []int{0, 3} {
			if got, buf, err = AppendEncoded(got, buf, p, rs, 1<<20); err != nil {
				t.Fatal(err)
			}
		}
		if got, buf, err = AppendEncoded(got, buf, 1, rs, limit); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round %d: %d messages unlike the %d of Encode", round, len(got), len(want))
		}
	}
}
