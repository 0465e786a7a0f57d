package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/enricher/rerate"
)

func runRerate(ctx context.Context, args []string) error {
	return rerateTo(ctx, os.Stdout, os.Stderr, time.Now, args)
}

// rerateTo implements "tokenmeter rerate": it prices the events of a time range again with
// the catalogue in force (the shipped one or -pricing DIR), prints the difference per team
// and model on w, and with -apply writes the corrections (see package rerate). Progress goes
// to stderr (unless -q) as clock tells the time.
func rerateTo(ctx context.Context, w, stderr io.Writer, clock func() time.Time, args []string) error {
	fs := flag.NewFlagSet("rerate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	dir := fs.String("pricing", os.Getenv("TOKENMETER_PRICING_DIR"), "directory of pricing files (default: the shipped catalogue)")
	fromText := fs.String("from", "", "first instant of the range, RFC 3339 or YYYY-MM-DD (required)")
	toText := fs.String("to", "", "end of the range, exclusive, RFC 3339 or YYYY-MM-DD (required)")
	apply := fs.Bool("apply", false, "write the corrections (without it, only print them)")
	note := fs.String("note", "", "why, recorded in rerate_runs (e.g. the price correction's ticket)")
	top := fs.Int("top", 20, "team and model lines to print")
	quiet := fs.Bool("q", false, "print no progress")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *quiet {
		stderr = io.Discard
	}
	var r rerate.Range
	var errs []error
	for _, f := range []struct {
		name, text string
		t          *time.Time
	}{{"-from", *fromText, &r.From}, {"-to", *toText, &r.To}} {
		t, err := parseInstant(f.text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", f.name, f.text, err))
		}
		*f.t = t
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return err
	}
	var cat *pricing.Catalog
	var err error
	if *dir != "" {
		cat, err = pricing.LoadDir(*dir)
	} else {
		cat, err = pricing.Default()
	}
	if err != nil {
		return err
	}
	conn, err := openClickHouse(ctx, *dsn, *db, false)
	if err != nil {
		return err
	}
	defer conn.Close()

	plan, err := computeWithProgress(ctx, conn, *db, cat, r, stderr, clock)
	if err != nil {
		return err
	}
	before, after := plan.Totals()
	fmt.Fprintf(w, "re-rating %s .. %s with catalogue %s: %d events scanned, %d change, %d change only their price version (left as they are), %d no longer priced (left as they are)\n",
		r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), plan.CatalogueVersion, plan.Scanned, len(plan.Changes), plan.VersionOnly, plan.Unpriceable)
	if len(plan.Changes) == 0 {
		fmt.Fprintln(w, "nothing to re-rate")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "team\tmodel\tevents\tcost before USD\tcost after USD\tdifference USD\t")
	diffs := plan.ByTeamAndModel()
	for i, d := range diffs {
		if i == *top {
			fmt.Fprintf(tw, "(%d more)\t\t\t\t\t\t\n", len(diffs)-*top)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t\n", orDash(d.Team), d.Model, d.Events, d.Before, d.After, d.After-d.Before)
	}
	fmt.Fprintf(tw, "total\t\t%d\t%s\t%s\t%s\t\n", len(plan.Changes), before, after, after-before)
	if err := tw.Flush(); err != nil {
		return err
	}
	if !*apply {
		fmt.Fprintln(w, "dry run: nothing written; run again with -apply to write these corrections")
		return nil
	}
	by := "unknown"
	if u, err := user.Current(); err == nil {
		by = u.Username
	}
	run := rerate.NewRun(time.Now(), plan.CatalogueVersion, by, *note)
	if err := rerate.Apply(ctx, conn, *db, plan, run); err != nil {
		return fmt.Errorf("%w (run the same command again to complete it: it re-rates only what is not yet corrected)", err)
	}
	fmt.Fprintf(w, "applied as %s: %d events corrected in %s.cost_corrections\n", run.ID, len(plan.Changes), *db)
	return nil
}

// maxRerateSlices bounds the slices computeWithProgress cuts a range into; rerateSlice is
// the length it aims for (usage_events is ordered by the hour first, so an hour is cheap to
// read).
const (
	maxRerateSlices = 100
	rerateSlice     = time.Hour
)

// computeWithProgress computes the plan of r slice by slice, reporting the events scanned
// against the events of the range as it goes. The slices partition r at whole seconds (event
// times are whole seconds in ClickHouse, and an event's corrections carry its time), so the
// plan is the one rerate.Compute gives for r in one piece.
func computeWithProgress(ctx context.Context, conn driver.Conn, db string, cat *pricing.Catalog, r rerate.Range, stderr io.Writer, clock func() time.Time) (rerate.Plan, error) {
	var total uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".usage_events WHERE time >= ? AND time < ?", r.From.UTC(), r.To.UTC()).Scan(&total); err != nil {
		return rerate.Plan{}, fmt.Errorf("count the events of %s .. %s in %s.usage_events: %w", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), db, err)
	}
	prog := newProgress(stderr, clock, "rerate", "events", int64(total))
	plan := rerate.Plan{Range: r, CatalogueVersion: cat.Version()}
	for _, s := range rerateSlices(r) {
		p, err := rerate.Compute(ctx, conn, db, cat, s)
		if err != nil {
			return rerate.Plan{}, err
		}
		plan.Scanned += p.Scanned
		plan.Changes = append(plan.Changes, p.Changes...)
		plan.VersionOnly += p.VersionOnly
		plan.Unpriceable += p.Unpriceable
		prog.Add(int64(p.Scanned))
	}
	prog.Finish()
	return plan, nil
}

// rerateSlices cuts r into consecutive ranges of about rerateSlice, at most
// maxRerateSlices, whose inner bounds are whole seconds.
func rerateSlices(r rerate.Range) []rerate.Range {
	d := r.To.Sub(r.From)
	n := d / rerateSlice
	if d%rerateSlice != 0 {
		n++
	}
	n = min(maxRerateSlices, max(1, n))
	step := d / n
	out := make([]rerate.Range, 0, n)
	from := r.From
	for i := time.Duration(1); i < n; i++ {
		to := r.From.Add(i * step).Truncate(time.Second)
		if !to.After(from) || !to.Before(r.To) {
			continue
		}
		out = append(out, rerate.Range{From: from, To: to})
		from = to
	}
	return append(out, rerate.Range{From: from, To: r.To})
}

func parseInstant(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("not an RFC 3339 time or a YYYY-MM-DD date")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
