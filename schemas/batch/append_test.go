package batch

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// arrowWrites is the IPC stream Arrow's own writer writes for rows: of Schema, or of
// plainSchema for fewer than dictionaryMinRows rows.
func arrowWrites(t testing.TB, rows []Row) []byte {
	plain := arrowRecord(rows)
	defer plain.Release()
	if len(rows) < dictionaryMinRows {
		return writeIPC(t, plain)
	}
	rec := dictionaryRecord(plain)
	defer rec.Release()
	return writeIPC(t, rec)
}

// randomRows are n rows of random values: any of a row's strings, tags and units may be
// empty or absent, so that columns and lists of every length meet.
func randomRows(rng *rand.Rand, n int) []Row {
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(40)) + "é"[:rng.IntN(3)]
	}
	i64 := func() int64 { return rng.Int64() - rng.Int64() }
	rows := make([]Row, n)
	for i := range rows {
		r := Row{
			ID: str(), Time: time.UnixMilli(i64() >> 20).UTC(), Received: time.UnixMilli(i64() >> 20).UTC(),
			Partition: rng.IntN(1 << 16), Provider: str(), Model: str(), Operation: str(),
			Tokens:      event.Tokens{Input: i64(), Output: i64(), CachedInput: i64(), CacheWrite: i64(), CacheWrite1h: i64(), Reasoning: i64()},
			ServiceTier: str(), ResponseID: str(), Status: str(), LatencyMS: i64(),
			Team: str(), Feature: str(), Env: str(), CostCenter: str(), Traffic: str(),
			WorkflowID: str(), PromptVersion: str(), CacheHit: rng.IntN(2) == 0,
			Priced: rng.IntN(2) == 0, ModelPriced: str(), PriceVersion: str(), CostPico: i64(), SavingsPico: i64(),
			Source: str(), Estimated: rng.IntN(2) == 0, EstimateReason: str(),
		}
		for range rng.IntN(4) {
			r.ExtraTags = append(r.ExtraTags, Tag{str(), str()})
		}
		for range rng.IntN(3) {
			r.Units = append(r.Units, Unit{str(), i64(), i64()})
		}
		rows[i] = r
	}
	return rows
}

// TestEncodeAsArrowWrites pins the encoder's bytes to those Arrow's ipc.Writer writes for the
// same rows — as Encode wrote them before it wrote them itself, and as every stage decodes
// them — for rows of every shape, after a prefix of every alignment, and checks that they
// decode to the rows.
func TestEncodeAsArrowWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sets := [][]Row{nil, {{}}, {{ID: "s", Time: t0, Received: t0}}, testRows(), benchRows(1), benchRows(300)}
	for _, n := range []int{1, 2, 7, 8, 9, 63, 64, 65, 1000} {
		sets = append(sets, randomRows(rng, n))
	}
	for i, rows := range sets {
		want := arrowWrites(t, rows)
		for _, prefix := range []string{"", "p", "tmS2", "prefix7"} {
			got, err := AppendEncoded([]byte(prefix), rows)
			if err != nil {
				t.Fatalf("set %d (%d rows): %v", i, len(rows), err)
			}
			if !bytes.HasPrefix(got, []byte(prefix)) || !bytes.Equal(got[len(prefix):], want) {
				t.Fatalf("set %d (%d rows) after %q: %d bytes unlike the %d Arrow writes (first difference at %d)",
					i, len(rows), prefix, len(got)-len(prefix), len(want), firstDiff(got[len(prefix):], want))
			}
		}
		got, err := Decode(want)
		if err != nil || (len(rows) > 0 && !reflect.DeepEqual(got, rows)) || len(got) != len(rows) {
			t.Fatalf("set %d: decoded %d rows (%v), unlike the %d encoded", i, len(got), err, len(rows))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestAppendEncoded checks that AppendEncoded writes what Encode writes, after what dst
// holds, and that the streams of one buffer decode to their rows.
func TestAppendEncoded(t *testing.T) {
	rows := benchRows(10)
	want, err := Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := AppendEncoded([]byte("prefix"), rows[:4])
	if err != nil {
		t.Fatal(err)
	}
	first := len(buf)
	if buf, err = AppendEncoded(buf, rows); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf, []byte("prefix")) {
		t.Fatalf("AppendEncoded overwrote dst: %q", buf[:len("prefix")])
	}
	if got := buf[first:]; !bytes.Equal(got, want) {
		t.Errorf("AppendEncoded wrote %d bytes unlike the %d of Encode", len(got), len(want))
	}
	got, err := Decode(buf[len("prefix"):first])
	if err != nil || !reflect.DeepEqual(got, rows[:4]) {
		t.Errorf("the first stream decodes to %+v, %v; want the first 4 rows %+v", got, err, rows[:4])
	}
}

// TestAppendEncodedReuse encodes full rows, sparse ones, then full ones again into one
// buffer used again (as the collector and the enricher use theirs), with the pooled encoder:
// nothing of the earlier rows (a true flag, a unit, a tag, padding) may show through in the
// later ones.
func TestAppendEncodedReuse(t *testing.T) {
	full := benchRows(300)
	sparse := make([]Row, 5)
	for i := range sparse {
		sparse[i] = Row{ID: fmt.Sprintf("s%d", i), Time: t0, Received: t0}
	}
	var buf []byte
	for i, rows := range [][]Row{full, sparse, full, sparse[:1]} {
		var err error
		if buf, err = AppendEncoded(buf[:0], rows); err != nil {
			t.Fatal(err)
		}
		if want := arrowWrites(t, rows); !bytes.Equal(buf, want) {
			t.Fatalf("encoding %d: %d bytes unlike the %d Arrow writes (first difference at %d)", i, len(buf), len(want), firstDiff(buf, want))
		}
	}
}

// FuzzEncode encodes rows of the fuzzer's choosing — strings of any bytes, any numbers — and
// wants Arrow's bytes and the rows back.
func FuzzEncode(f *testing.F) {
	f.Add(uint64(1), uint8(3), "evt", "openai", int64(12))
	f.Add(uint64(7), uint8(0), "", "", int64(-1))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, id, model string, tokens int64) {
		rows := randomRows(rand.New(rand.NewPCG(seed, 0)), int(n))
		for i := range rows {
			rows[i].ID, rows[i].Model, rows[i].Tokens.Input = id, model, tokens
			rows[i].ExtraTags = append(rows[i].ExtraTags, Tag{model, id})
		}
		got, err := Encode(rows)
		if err != nil {
			t.Fatal(err)
		}
		if want := arrowWrites(t, rows); !bytes.Equal(got, want) {
			t.Fatalf("%d rows: %d bytes unlike the %d Arrow writes (first difference at %d)", len(rows), len(got), len(want), firstDiff(got, want))
		}
		back, err := Decode(got)
		if err != nil || len(back) != len(rows) || (len(rows) > 0 && !reflect.DeepEqual(back, rows)) {
			t.Fatalf("decoded %d rows (%v), unlike the %d encoded", len(back), err, len(rows))
		}
	})
}

// TestBodySize checks that bodySize holds every body, so that encoding grows its buffer once
// and never copies it, and that it asks for little more than the body takes.
func TestBodySize(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sets := [][]Row{nil, {{}}, testRows(), benchRows(1000)}
	for _, n := range []int{1, 5, 100, 1000} {
		sets = append(sets, randomRows(rng, n))
	}
	for i, rows := range sets {
		for _, dict := range []bool{false, true} {
			data, err := appendEncoded(nil, rows, dict)
			if err != nil {
				t.Fatal(err)
			}
			msgs, _, err := checkFraming(data)
			if err != nil {
				t.Fatal(err)
			}
			batch := msgs[len(msgs)-1]
			if 8+len(batch.meta) != 8+metaSize(len(rows), dict) {
				t.Errorf("set %d (%d rows, dictionaries %t): record batch metadata of %d bytes, metaSize %d", i, len(rows), dict, len(batch.meta), metaSize(len(rows), dict))
			}
			body := len(batch.body)
			if size := bodySize(rows, dict); size < body || size > body+plainBuffers*(4+7)+len(rows)*8 {
				t.Errorf("set %d (%d rows, dictionaries %t): bodySize = %d for a body of %d", i, len(rows), dict, size, body)
			}
			dicts := 0
			for _, m := range msgs[1 : len(msgs)-1] {
				dicts += 8 + len(m.meta) + len(m.body)
				if len(m.meta) > dictionaryMetadata {
					t.Errorf("set %d (%d rows): dictionary metadata of %d bytes, more than %d", i, len(rows), len(m.meta), dictionaryMetadata)
				}
			}
			e := &encoder{dictionaries: dict}
			e.collect(rows)
			if size := e.dictionariesSize(); size < dicts || size > dicts+len(dictionaryColumns)*(8+2*7) {
				t.Errorf("set %d (%d rows, dictionaries %t): dictionariesSize = %d for dictionaries of %d", i, len(rows), dict, size, dicts)
			}
			if allocs := testing.AllocsPerRun(10, func() { _, _ = appendEncoded(nil, rows, dict) }); allocs != 1 {
				t.Errorf("set %d (%d rows, dictionaries %t): encoding allocates %v times, want once (its buffer)", i, len(rows), dict, allocs)
			}
		}
	}
}

// A dictionary finds a value by where its bytes lie only when the bytes are the value's:
// values that share their first byte but not their length are told apart, an entry of an
// earlier batch never answers for the next, and neither does one when the generation wraps.
func TestDictionarySeen(t *testing.T) {
	shared := strings.Repeat("team-alpha", 2)
	rows := []Row{{Team: shared[:4]}, {Team: shared[:9]}, {Team: shared[:4]}, {Team: shared}, {Team: ""}, {Team: shared[:9]}}
	var d dictionary
	for _, gen := range []uint32{0, 100, math.MaxUint32 - 1, math.MaxUint32} {
		d.gen = gen
		d.collect(rows, func(r *Row) string { return r.Team })
		want := []int32{0, 1, 0, 2, 3, 1}
		if !slices.Equal(d.indices, want) || !slices.Equal(d.values, []string{"team", "team-alph", shared, ""}) {
			t.Fatalf("generation %d: indices %v of %q, want %v", gen, d.indices, d.values, want)
		}
		// The next batch's values at the same addresses, but other rows: none is taken from
		// the batch before.
		d.collect(rows[3:], func(r *Row) string { return r.Team })
		if want := []int32{0, 1, 2}; !slices.Equal(d.indices, want) {
			t.Fatalf("after generation %d: indices %v of %q, want %v", gen, d.indices, d.values, want)
		}
	}
}

// TestDictionaryMinRows: a batch of a few rows is smaller plain, a batch of a few dozen
// smaller with dictionaries — of rows whose values all repeat and of rows with a few dozen
// values a column and random ids alike — and Encode picks the format by that bound.
func TestDictionaryMinRows(t *testing.T) {
	vs, err := schemaVersions()
	if err != nil {
		t.Fatal(err)
	}
	if v := vs[plainVersion]; v.dictionary || v.cols != numCols {
		t.Fatalf("plainVersion is %+v, want every column, plain", v.schemaRelease)
	}
	compressed := func(rows []Row, dict bool) int {
		data, err := appendEncoded(nil, rows, dict)
		if err != nil {
			t.Fatal(err)
		}
		return len(s2.Encode(nil, data))
	}
	for name, rows := range map[string]func(int) []Row{"repeating": benchRows, "mixed": mixedRows} {
		small, large := rows(dictionaryMinRows/2), rows(2*dictionaryMinRows)
		if p, d := compressed(small, false), compressed(small, true); p >= d {
			t.Errorf("%s, %d rows: %d bytes plain, %d with dictionaries; want plain smaller", name, len(small), p, d)
		}
		if p, d := compressed(large, false), compressed(large, true); d >= p {
			t.Errorf("%s, %d rows: %d bytes plain, %d with dictionaries; want dictionaries smaller", name, len(large), p, d)
		}
		for _, n := range []int{1, dictionaryMinRows - 1, dictionaryMinRows} {
			data, err := Encode(rows(n))
			if err != nil {
				t.Fatal(err)
			}
			_, release, err := checkFraming(data)
			if err != nil || release.dictionary != (n >= dictionaryMinRows) {
				t.Errorf("%s, %d rows: Encode wrote schema %+v (%v)", name, n, release, err)
			}
		}
	}
}
