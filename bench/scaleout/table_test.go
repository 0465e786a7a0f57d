package scaleout

import (
	"strings"
	"testing"
	"time"
)

func TestTables(t *testing.T) {
	r := Result{
		Partitions: 2, Events: 1_000_000, Elapsed: 10 * time.Second,
		CPU: map[string]time.Duration{
			"nats-server": time.Second, "collector": 3 * time.Second, "enricher": time.Second, "enricher#2": 500 * time.Millisecond,
			"aggregator": 2 * time.Second, "aggregator#2": 2 * time.Second, ClickHouse: 6 * time.Second,
		},
		Samples: []Sample{
			{At: 0, RSS: map[string]int64{"nats-server": 10 << 20, "collector": 20 << 20, "enricher": 30 << 20, "enricher#2": 31 << 20, "aggregator": 40 << 20, "aggregator#2": 41 << 20, ClickHouse: 500 << 20},
				StreamBytes: map[string]uint64{"USAGE_RAW": 0, "USAGE_ENRICHED": 0, "USAGE_HISTORY": 0}},
			{At: 61 * time.Second, RSS: map[string]int64{"nats-server": 11 << 20, "collector": 21 << 20, "enricher": 32 << 20, "enricher#2": 33 << 20, "aggregator": 90 << 20, "aggregator#2": 91 << 20, ClickHouse: 600 << 20},
				StreamBytes: map[string]uint64{"USAGE_RAW": 3 << 19, "USAGE_ENRICHED": 5 << 20, "USAGE_HISTORY": 2 << 30}, ClickHouseBytes: 75 << 20},
		},
	}
	var b strings.Builder
	if err := WriteTable(&b, []Result{r}); err != nil {
		t.Fatal(err)
	}
	want := "| partitions (enrichers, aggregators) | events | events/s | collector µs/event | enrichers | aggregators | NATS | ClickHouse | total |\n" +
		"| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" +
		"| 2 | 1000000 | 100000 | 3.00 | 1.50 | 4.00 | 1.00 | 6.00 | 15.50 |\n"
	if b.String() != want {
		t.Errorf("WriteTable:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := WriteMemoryTable(&b, r); err != nil {
		t.Fatal(err)
	}
	want = "In MiB: each process's resident memory, each stream's bytes, the run's ClickHouse database on disk.\n\n| at | nats-server RSS | collector RSS | enricher RSS | enricher#2 RSS | aggregator RSS | aggregator#2 RSS | clickhouse-server RSS | USAGE_RAW | USAGE_ENRICHED | USAGE_HISTORY | ClickHouse disk |\n" +
		"| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" +
		"| 0s | 10 | 20 | 30 | 31 | 40 | 41 | 500 | 0.0 | 0.0 | 0.0 | 0 |\n" +
		"| 1m1s | 11 | 21 | 32 | 33 | 90 | 91 | 600 | 1.5 | 5.0 | 2048.0 | 75 |\n"
	if b.String() != want {
		t.Errorf("WriteMemoryTable:\n%s\nwant:\n%s", b.String(), want)
	}
}

// A run of more than ten samples shows the start, every fifth minute and the end.
func TestMemoryTableOfALongRun(t *testing.T) {
	r := Result{CPU: map[string]time.Duration{"collector": 0}}
	for m := range 12 {
		r.Samples = append(r.Samples, Sample{At: time.Duration(m)*time.Minute + 2*time.Millisecond, RSS: map[string]int64{"collector": int64(m) << 20}})
	}
	r.Samples = append(r.Samples, Sample{At: 11*time.Minute + 3*time.Second, RSS: map[string]int64{"collector": 12 << 20}})
	var b strings.Builder
	if err := WriteMemoryTable(&b, r); err != nil {
		t.Fatal(err)
	}
	want := "In MiB: each process's resident memory, each stream's bytes, the run's ClickHouse database on disk.\n\n| at | collector RSS | USAGE_RAW | USAGE_ENRICHED | USAGE_HISTORY | ClickHouse disk |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n" +
		"| 0s | 0 | 0.0 | 0.0 | 0.0 | 0 |\n| 5m0s | 5 | 0.0 | 0.0 | 0.0 | 0 |\n| 10m0s | 10 | 0.0 | 0.0 | 0.0 | 0 |\n| 11m3s | 12 | 0.0 | 0.0 | 0.0 | 0 |\n"
	if b.String() != want {
		t.Errorf("WriteMemoryTable:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestRenumberMakesNewIDs(t *testing.T) {
	in := []byte(`{"id":"evt_1","time":"2026-11-27T00:00:00Z","provider":"openai","response_id":"chatcmpl-9"}` + "\n" + `{"id":"evt_2","provider":"x"}` + "\n")
	want := `{"id":"r3-evt_1","time":"2026-11-27T00:00:00Z","provider":"openai","response_id":"r3-chatcmpl-9"}` + "\n" + `{"id":"r3-evt_2","provider":"x"}` + "\n"
	if got := string(renumber(in, 3)); got != want {
		t.Errorf("renumber:\n got %s\nwant %s", got, want)
	}
}
