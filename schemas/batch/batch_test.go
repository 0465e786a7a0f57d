package batch

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

var t0 = time.Date(2026, 11, 26, 22, 41, 31, 123_000_000, time.UTC)

// fullRow has every field set.
func fullRow() Row {
	return Row{
		ID: "evt_01JDXYZ", Time: t0, Received: t0.Add(1500 * time.Millisecond), Partition: 3,
		Provider: "openai", Model: "gpt-4o-2024-08-06", Operation: "chat",
		Tokens:      event.Tokens{Input: 1200, Output: 300, CachedInput: 1000, CacheWrite: 100, CacheWrite1h: 50, Reasoning: 20},
		ServiceTier: "priority", ResponseID: "chatcmpl-B9MBs8", Status: "ok", LatencyMS: 850,
		Team: "search", Feature: "summarize", Env: "prod", CostCenter: "cc-42", Traffic: "user",
		ExtraTags:  []Tag{{"customer", "acme"}, {"region", "eu-west-1"}},
		WorkflowID: "ticket-4711", PromptVersion: "summarize@v7", CacheHit: true,
		Priced: true, ModelPriced: "gpt-4o-2024-08-06", PriceVersion: "2026-11-01", CostPico: 4_500_000_000, SavingsPico: 1_250_000_000,
		Source: "key:search-prod",
		Units: []Unit{{"audio_input_tokens", 150, 6_000_000_000}, {"image_outputs:1024x1024:high", 2, 334_000_000_000},
			{"web_search_calls", 3, 30_000_000_000}},
		Estimated: true, EstimateReason: event.EstimateCutStream,
	}
}

func testRows() []Row {
	unicode := fullRow()
	unicode.ID, unicode.Model, unicode.Team = "évt_☃_日本語", "模型-🚀", "équipe"
	unicode.ExtraTags = []Tag{{"emoji", "🙂"}, {"empty", ""}, {"zh", "中文"}}
	unicode.Time, unicode.Received = t0.Add(999*time.Millisecond), t0.Add(-time.Millisecond)

	max := fullRow()
	max.ID = strings.Repeat("x", 128)
	max.Partition = math.MaxUint16
	max.Tokens = event.Tokens{Input: math.MaxInt64, Output: math.MaxInt64, CachedInput: math.MaxInt64,
		CacheWrite: math.MaxInt64, CacheWrite1h: math.MaxInt64, Reasoning: math.MaxInt64}
	max.LatencyMS, max.CostPico, max.SavingsPico = math.MaxInt64, math.MaxInt64, math.MinInt64
	max.Time = time.Date(2262, 4, 11, 23, 47, 16, 854_000_000, time.UTC)
	max.Received = time.Date(1969, 12, 31, 23, 59, 59, 1_000_000, time.UTC)
	max.Units = []Unit{{"requests", math.MaxInt64, math.MinInt64}}

	return []Row{
		fullRow(),
		{}, // zero values: empty strings, zero tokens, the zero time, no tags
		{ID: "e", Time: t0, Received: t0, Provider: "p", Model: "m"},
		unicode,
		max,
	}
}

func TestRoundTrip(t *testing.T) {
	for _, rows := range [][]Row{nil, testRows()[:1], testRows()} {
		t.Run(fmt.Sprintf("%d rows", len(rows)), func(t *testing.T) {
			data, err := Encode(rows)
			if err != nil {
				t.Fatalf("Encode() error = %v", err)
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			if !reflect.DeepEqual(got, rows) {
				t.Fatalf("Decode(Encode(rows)) =\n%+v\nwant\n%+v", got, rows)
			}
		})
	}
}

// TestDecodeReleasedSchemas decodes a batch as each released schema version wrote it: the
// columns a version lacks read as their zero value, so messages written before an upgrade are
// still read after it.
func TestDecodeReleasedSchemas(t *testing.T) {
	for _, r := range released {
		k := r.cols
		t.Run(fmt.Sprintf("%d columns, dictionaries %t", k, r.dictionary), func(t *testing.T) {
			rows := testRows()
			rec := arrowRecord(rows)
			defer rec.Release()
			data := firstColumns(t, rec, k)
			if r.dictionary {
				dict := dictionaryRecord(rec)
				defer dict.Release()
				data = writeIPC(t, dict)
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatalf("Decode() error = %v", err)
			}
			for i := range rows {
				if k <= colSource {
					rows[i].Source = ""
				}
				if k <= colUnitCosts {
					rows[i].Units = nil
				}
				if k <= colEstimateReason {
					rows[i].Estimated, rows[i].EstimateReason = false, ""
				}
			}
			if !reflect.DeepEqual(got, rows) {
				t.Fatalf("Decode() =\n%+v\nwant\n%+v", got, rows)
			}
		})
	}
	// A schema that is not a released one — here the first column only — is refused.
	rec := arrowRecord(testRows())
	defer rec.Release()
	if _, err := Decode(firstColumns(t, rec, 1)); err == nil || !strings.Contains(err.Error(), "does not start with the schema message") {
		t.Fatalf("Decode(one column) error = %v, want the schema refused", err)
	}
}

// firstColumns is rec's first k columns as an IPC stream, as a writer of that schema wrote it.
func firstColumns(t *testing.T, rec arrow.Record, k int) []byte {
	old := array.NewRecord(arrow.NewSchema(plainSchema.Fields()[:k], nil), rec.Columns()[:k], rec.NumRows())
	defer old.Release()
	return writeIPC(t, old)
}

func TestOutranks(t *testing.T) {
	row := func(source string, tokens event.Tokens) *Row { return &Row{Source: source, Tokens: tokens} }
	plain := event.Tokens{Input: 1000, Output: 200}
	split := event.Tokens{Input: 1000, Output: 200, CacheWrite: 600, CacheWrite1h: 100}
	for _, c := range []struct {
		name string
		r, o *Row
		want bool
	}{
		{"proxy over anonymous", row(SourceProxy, plain), row("", split), true},
		{"anonymous under proxy, however detailed", row("", split), row(SourceProxy, plain), false},
		{"key over anonymous", row(SourceKey+"k", plain), row("", split), true},
		{"emitter over anonymous", row(SourceEmitter+"svc", plain), row("", plain), true},
		{"proxy over key", row(SourceProxy, plain), row(SourceKey+"k", split), true},
		{"key and emitter rank alike: more detail wins", row(SourceEmitter+"svc", split), row(SourceKey+"k", plain), true},
		{"equal rank, less detail", row(SourceKey+"a", plain), row(SourceKey+"b", split), false},
		{"equal reports: the first stays", row("", plain), row("", plain), false},
		{"a reporter cannot name itself proxy-like", row("proxy ", split), row("", plain), true},
		{"... nor rank above anonymous by it", row("proxy ", plain), row("", plain), false},
		{"equal rank: counted units are detail", &Row{Source: SourceKey + "a", Tokens: plain, Units: []Unit{{Key: "web_search_calls", Count: 2}}}, row(SourceKey+"b", plain), true},
		{"measured anonymous over an estimate of the proxy", row("", plain), &Row{Source: SourceProxy, Tokens: split, Estimated: true}, true},
		{"an estimate of the proxy under a measured key report", &Row{Source: SourceProxy, Tokens: split, Estimated: true}, row(SourceKey+"k", plain), false},
		{"a client's estimate under a measured anonymous report", &Row{Source: SourceKey + "k", Tokens: split, Estimated: true}, row("", plain), false},
		{"two estimates: the proxy's over a key's", &Row{Source: SourceProxy, Tokens: plain, Estimated: true}, &Row{Source: SourceKey + "k", Tokens: split, Estimated: true}, true},
		{"two estimates of equal rank: more detail", &Row{Source: SourceProxy, Tokens: split, Estimated: true}, &Row{Source: SourceProxy, Tokens: plain, Estimated: true}, true},
	} {
		if got := c.r.Outranks(c.o); got != c.want {
			t.Errorf("%s: Outranks = %v, want %v (ranks %d, %d; detail %d, %d)", c.name, got, c.want, c.r.Rank(), c.o.Rank(), c.r.Detail(), c.o.Detail())
		}
	}
}

// TestDecodeCopies checks the documented promise that rows do not hold on to the payload.
func TestDecodeCopies(t *testing.T) {
	data, err := Encode([]Row{fullRow()})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 0
	}
	if !reflect.DeepEqual(rows, []Row{fullRow()}) {
		t.Fatalf("rows changed with the payload: %+v", rows)
	}
}

func TestFromUsage(t *testing.T) {
	u := event.Usage{
		ID: "evt_1", Time: t0, Provider: "anthropic", Model: "claude-sonnet-4", Operation: "messages",
		Usage:       event.Tokens{Input: 10, Output: 5, CachedInput: 2, CacheWrite: 3, CacheWrite1h: 1, Reasoning: 4},
		ServiceTier: "batch", ResponseID: "msg_1", Status: "ok", LatencyMS: 42,
		Tags: map[string]string{
			"team": "search", "feature": "summarize", "env": "prod", "cost_center": "cc-42", "traffic": "background",
			"zeta": "z", "alpha": "a", "mid.key": "m", "customer-id": "c",
		},
		WorkflowID: "wf", PromptVersion: "pv", CacheHit: true,
		Units: event.Units{"web_search_calls": 2, "audio_input_tokens": 4},
	}
	received := time.Date(2026, 11, 26, 22, 41, 32, 987_654_321, time.FixedZone("CET", 3600))
	got := FromUsage(&u, received, 2)
	want := Row{
		ID: "evt_1", Time: t0, Received: time.Date(2026, 11, 26, 21, 41, 32, 987_000_000, time.UTC), Partition: 2,
		Provider: "anthropic", Model: "claude-sonnet-4", Operation: "messages", Tokens: u.Usage,
		ServiceTier: "batch", ResponseID: "msg_1", Status: "ok", LatencyMS: 42,
		Team: "search", Feature: "summarize", Env: "prod", CostCenter: "cc-42", Traffic: "background",
		ExtraTags:  []Tag{{"alpha", "a"}, {"customer-id", "c"}, {"mid.key", "m"}, {"zeta", "z"}},
		WorkflowID: "wf", PromptVersion: "pv", CacheHit: true,
		Units: []Unit{{Key: "audio_input_tokens", Count: 4}, {Key: "web_search_calls", Count: 2}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromUsage() =\n%+v\nwant\n%+v", got, want)
	}
	if eu := got.EventUnits(); !reflect.DeepEqual(eu, u.Units) {
		t.Fatalf("EventUnits() = %v, want %v", eu, u.Units)
	}

	// Only well-known tags: no extra tags at all (nil, which is what Decode returns).
	u.Tags = map[string]string{"team": "t"}
	if r := FromUsage(&u, received, 0); r.Team != "t" || r.ExtraTags != nil {
		t.Fatalf("FromUsage() with only team: Team = %q, ExtraTags = %#v", r.Team, r.ExtraTags)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode([]Row{fullRow()})
	if err != nil {
		t.Fatal(err)
	}
	other := func() []byte {
		// An Arrow stream of another schema, as a future or foreign writer might send.
		s := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.BinaryTypes.String}}, nil)
		b := array.NewRecordBuilder(memory.DefaultAllocator, s)
		defer b.Release()
		b.Field(0).(*array.StringBuilder).Append("evt_1")
		rec := b.NewRecord()
		defer rec.Release()
		return writeIPC(t, rec)
	}()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not arrow", []byte("hello, world")},
		{"another schema", other},
		{"truncated in the schema", good[:40]},
		{"truncated in the record", good[:len(good)-100]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := Decode(tc.data)
			if err == nil {
				t.Fatalf("Decode() = %d rows, want an error", len(rows))
			}
			if !strings.HasPrefix(err.Error(), "decode arrow batch: ") {
				t.Fatalf("Decode() error = %q, want it to say what was being done", err)
			}
			if rows != nil {
				t.Fatalf("Decode() = %d rows with an error", len(rows))
			}
		})
	}
}

func benchRows(n int) []Row {
	rows := make([]Row, n)
	for i := range rows {
		r := fullRow()
		r.ID = fmt.Sprintf("evt_%06d", i)
		r.ResponseID = fmt.Sprintf("chatcmpl-%06d", i)
		r.Time = t0.Add(time.Duration(i) * time.Millisecond)
		rows[i] = r
	}
	return rows
}

func BenchmarkEncode(b *testing.B) {
	rows := benchRows(1000)
	data, err := Encode(rows)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Encode(rows); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data, err := Encode(benchRows(1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rows, err := Decode(data)
		if err != nil || len(rows) != 1000 {
			b.Fatalf("Decode() = %d rows, %v", len(rows), err)
		}
	}
}

// AppendDecoded appends after the rows it is given, and leaves them as they were when the
// payload is bad.
func TestAppendDecoded(t *testing.T) {
	first, second := benchRows(3), benchRows(5)[3:]
	a, err := Encode(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(second)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := AppendDecoded(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	rows, err = AppendDecoded(rows, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]Row{}, first...), second...); !reflect.DeepEqual(rows, want) {
		t.Fatalf("AppendDecoded of two payloads = %+v, want %+v", rows, want)
	}
	got, err := AppendDecoded(rows, b[:len(b)-20])
	if err == nil {
		t.Fatal("AppendDecoded of a truncated payload succeeded")
	}
	if len(got) != 5 || !reflect.DeepEqual(got, rows) {
		t.Fatalf("AppendDecoded of a truncated payload returned %d rows, want the 5 given", len(got))
	}
}

func TestTierFallback(t *testing.T) {
	f := func(priced bool, tier, version string, wantTier string, want bool) {
		t.Helper()
		r := Row{Priced: priced, ServiceTier: tier, PriceVersion: version}
		if got := PriceTier(version); got != wantTier {
			t.Errorf("PriceTier(%q) = %q, want %q", version, got, wantTier)
		}
		if got := r.TierFallback(); got != want {
			t.Errorf("Row{Priced: %t, ServiceTier: %q, PriceVersion: %q}.TierFallback() = %t, want %t", priced, tier, version, got, want)
		}
	}
	f(true, "batch", "openai/gpt-4o@2024-10-01/batch", "batch", false)
	f(true, "batch", "openai/gpt-4o@2024-10-01/standard", "standard", true)
	f(true, "priority", "openai/gpt-4o@2024-10-01/standard/long", "standard", true)
	f(true, "flex", "openai/o3@2025-06-10/flex/long/discount=12.5%@2026-01-01", "flex", false)
	f(true, "flex", "openai/o3@2025-06-10/standard/org", "standard", true)
	f(true, "standard", "openai/gpt-4o@2024-10-01/standard", "standard", false)
	f(true, "", "openai/gpt-4o@2024-10-01/standard", "standard", false)
	// Vertex AI's "@" snapshots in a model name are not effective dates.
	f(true, "batch", "google/claude-sonnet-4-5@20250929@2025-09-29/standard", "standard", true)
	f(true, "batch", "google/claude-sonnet-4-5@20250929@2025-09-29/batch", "batch", false)
	// Unpriced rows are not fallbacks; a priced row whose version names no tier is.
	f(false, "batch", "", "", false)
	f(true, "batch", "some-version", "", true)
	f(true, "batch", "x@2025-01-0x/batch", "", true)
	f(true, "batch", "x@2025-01-01", "", true)
}

// TestDecodeUnitMismatch: a row whose unit lists differ in length is refused, naming it.
func TestDecodeUnitMismatch(t *testing.T) {
	rec := arrowRecord([]Row{fullRow()})
	defer rec.Release()
	other := arrowRecord([]Row{{Units: []Unit{{Key: "requests", Count: 1}}}})
	defer other.Release()
	cols := slices.Clone(rec.Columns())
	cols[colUnitCounts] = other.Column(colUnitCounts)
	bad := array.NewRecord(plainSchema, cols, 1)
	defer bad.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(plainSchema))
	if err := w.Write(bad); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "decode arrow batch: row 0 has 3 unit keys, 1 counts and 3 costs"
	if _, err := Decode(buf.Bytes()); err == nil || err.Error() != want {
		t.Fatalf("Decode() error = %v, want %s", err, want)
	}
}
