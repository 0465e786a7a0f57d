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

// WriteMemoryTable writes the resident memory of every process of r, in MiB: at every sample
// of a short run, and at the start, every fifth minute and the end of a longer one.
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
	fmt.Fprint(w, "| process |")
	for _, s := range samples {
		fmt.Fprintf(w, " RSS at %s |", s.At.Round(time.Second))
	}
	fmt.Fprint(w, "\n| --- |")
	for range samples {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w)
	for _, name := range r.Names() {
		fmt.Fprintf(w, "| %s |", name)
		for _, s := range samples {
			fmt.Fprintf(w, " %.0f MiB |", float64(s.RSS[name])/(1<<20))
		}
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
	}
	for _, name := range SampledStreams {
		fmt.Fprintf(w, "| %s (disk) |", name)
		for _, s := range samples {
			fmt.Fprintf(w, " %.1f MiB |", float64(s.StreamBytes[name])/(1<<20))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "| ClickHouse database (disk) |")
	for _, s := range samples {
		fmt.Fprintf(w, " %.0f MiB |", float64(s.ClickHouseBytes)/(1<<20))
	}
	_, err := fmt.Fprintln(w)
	return err
}

func us(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Microsecond)) }
