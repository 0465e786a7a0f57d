package scaleout

import (
	"fmt"
	"io"
	"time"

	"github.com/tokenmeter/tokenmeter/bench/chaos"
)

// WriteTable writes a Markdown table of throughput runs, one row per partition count: events
// per second, and the CPU time per event of each kind of process (all of its instances).
func WriteTable(w io.Writer, results []Result) error {
	if _, err := fmt.Fprintln(w, "| partitions (enrichers, aggregators) | events | events/s | collector µs/event | enrichers | aggregators | NATS | ClickHouse | total |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"); err != nil {
		return err
	}
	for _, r := range results {
		var total time.Duration
		for _, d := range r.CPU {
			total += d
		}
		total /= time.Duration(max(r.Events, 1))
		if _, err := fmt.Fprintf(w, "| %d | %d | %.0f | %s | %s | %s | %s | %s | %s |\n", r.Partitions, r.Events, r.EventsPerSecond(),
			us(r.CPUPerEvent(chaos.Collector)), us(r.CPUPerEvent(chaos.Enricher)), us(r.CPUPerEvent(chaos.Aggregator)),
			us(r.CPUPerEvent(chaos.NATS)), us(r.CPUPerEvent(ClickHouse)), us(total)); err != nil {
			return err
		}
	}
	return nil
}

// WriteMemoryTable writes, one row per sample, the resident memory of every process of r and
// the bytes of the streams and of the run's ClickHouse database, in MiB: every sample of a
// short run, and the start, every fifth minute and the end of a longer one.
func WriteMemoryTable(w io.Writer, r Result) error {
	samples := r.Samples
	if len(samples) > 10 {
		samples = nil
		for i, s := range r.Samples {
			if i == 0 || i == len(r.Samples)-1 || s.At.Round(time.Second)%(5*time.Minute) == 0 {
				samples = append(samples, s)
			}
		}
	}
	names := r.Names()
	fmt.Fprint(w, "In MiB: each process's resident memory, each stream's bytes, the run's ClickHouse database on disk.\n\n| at |")
	for _, name := range names {
		fmt.Fprintf(w, " %s RSS |", name)
	}
	for _, name := range SampledStreams {
		fmt.Fprintf(w, " %s |", name)
	}
	fmt.Fprint(w, " ClickHouse disk |\n| ---: |")
	for range len(names) + len(SampledStreams) + 1 {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w)
	for _, s := range samples {
		fmt.Fprintf(w, "| %s |", s.At.Round(time.Second))
		for _, name := range names {
			fmt.Fprintf(w, " %.0f |", float64(s.RSS[name])/(1<<20))
		}
		for _, name := range SampledStreams {
			fmt.Fprintf(w, " %.1f |", float64(s.StreamBytes[name])/(1<<20))
		}
		if _, err := fmt.Fprintf(w, " %.0f |\n", float64(s.ClickHouseBytes)/(1<<20)); err != nil {
			return err
		}
	}
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Microsecond)) }
