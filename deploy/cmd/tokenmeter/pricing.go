package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/enricher/pricing/litellm"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

const pricingUsage = `usage: tokenmeter pricing validate FILE...
       tokenmeter pricing lookup [-pricing DIR] [-at TIME] [-tier TIER] [-input N -output N ...] PROVIDER MODEL
       tokenmeter pricing import litellm [-effective DATE] [-source TEXT] [-out DIR] FILE
       tokenmeter pricing list [-pricing DIR] [-provider P] [-at DATE]
       tokenmeter pricing diff litellm|genai-prices [-pricing DIR] [-at DATE] [-notes] FILE|DIR
       tokenmeter pricing publish [-pricing DIR] [-clickhouse DSN] [-database DB] [-check-window DAYS]
       tokenmeter pricing stale [-clickhouse DSN] [-database DB] [-max-share P] [-all]`

// runPricing implements the "tokenmeter pricing" subcommands.
func runPricing(args []string) error {
	return runPricingTo(os.Stdout, args)
}

func runPricingTo(w io.Writer, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "validate":
			if len(args) > 1 {
				return pricingValidate(w, args[1:])
			}
		case "lookup":
			return pricingLookup(w, args[1:])
		case "list":
			return pricingList(w, args[1:])
		case "diff":
			return pricingDiff(w, args[1:])
		case "publish":
			return pricingPublish(w, time.Now, args[1:])
		case "stale":
			return pricingStale(w, args[1:])
		case "import":
			if len(args) > 1 && args[1] == "litellm" {
				return pricingImportLiteLLM(w, args[2:])
			}
			return errors.New("usage: tokenmeter pricing import litellm [-effective DATE] [-source TEXT] [-out DIR] FILE")
		case "help", "-h", "--help":
			fmt.Fprintln(w, pricingUsage)
			return nil
		}
	}
	return errors.New("usage: tokenmeter pricing validate FILE...")
}

// pricingValidate checks pricing files and organisation overrides files
// (*.overrides.yaml): each must parse on its own, and together they must form a catalogue
// without ambiguous names.
func pricingValidate(w io.Writer, names []string) error {
	var files []pricefile.File
	var overrides []pricefile.Overrides
	var errs []error
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.HasSuffix(name, pricing.OverridesSuffix) {
			o, err := pricefile.ParseOverrides(name, data)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			overrides = append(overrides, o)
			continue
		}
		f, err := pricefile.Parse(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	cat, err := pricing.Build(files, overrides)
	if err != nil {
		return err
	}
	for _, f := range files {
		prices := 0
		for _, m := range f.Models {
			prices += len(m.Prices)
		}
		fmt.Fprintf(w, "%s: provider %s, %d models, %d price rows\n", f.Name, f.Provider, len(f.Models), prices)
	}
	for _, o := range overrides {
		fmt.Fprintf(w, "%s: overrides, %d discounts, %d models, %d deployments\n", o.Name, len(o.Discounts), len(o.Models), len(o.Deployments))
	}
	fmt.Fprintf(w, "ok: catalogue version %s\n", cat.Version())
	return nil
}

// pricingLookup prints what the catalogue makes of a provider and model name at a time, and
// what a call with the given tokens costs.
func pricingLookup(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("pricing lookup", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("pricing", os.Getenv("TOKENMETER_PRICING_DIR"), "directory of pricing files (default: the shipped catalogue)")
	atText := fs.String("at", "", "time of the call, RFC 3339 or YYYY-MM-DD (default: now)")
	tier := fs.String("tier", "", "service tier: standard, batch, flex, priority")
	var t event.Tokens
	fs.Int64Var(&t.Input, "input", 1_000_000, "input tokens, cached reads and cache writes included")
	fs.Int64Var(&t.Output, "output", 1_000_000, "output tokens, reasoning included")
	fs.Int64Var(&t.CachedInput, "cached", 0, "cached input tokens")
	fs.Int64Var(&t.CacheWrite, "cache-write", 0, "cache-write tokens")
	fs.Int64Var(&t.CacheWrite1h, "cache-write-1h", 0, "of which 1-hour cache-write tokens")
	fs.Int64Var(&t.Reasoning, "reasoning", 0, "reasoning tokens")
	var units event.Units
	fs.Func("unit", "a unit of the call, KEY=COUNT (web_search_calls=2, audio_input_tokens=800); repeatable", func(v string) error {
		k, n, ok := strings.Cut(v, "=")
		count, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil {
			return fmt.Errorf("%q: want KEY=COUNT", v)
		}
		if units == nil {
			units = event.Units{}
		}
		units[k] = count
		return nil
	})
	// Flags may come before or after the two names ("lookup openai gpt-4o --at 2025-01-01").
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			names = nil
			break
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(names) != 2 {
		return errors.New("usage: tokenmeter pricing lookup [-pricing DIR] [-at TIME] [-tier TIER] [-input N] [-output N] [-cached N] [-cache-write N] [-cache-write-1h N] [-reasoning N] [-unit KEY=COUNT]... PROVIDER MODEL")
	}
	at := time.Now().UTC()
	if *atText != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, *atText); err != nil {
			if at, err = time.Parse(time.DateOnly, *atText); err != nil {
				return fmt.Errorf("-at %q: not an RFC 3339 time or a YYYY-MM-DD date", *atText)
			}
		}
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
	provider, model := names[0], names[1]
	q, unitCosts := cat.PriceUnits(provider, model, *tier, at, t, units, false)
	if !q.Priced {
		return fmt.Errorf("%s %s at %s: not priced (unknown provider or model, no price in force then, a unit without a price, or invalid counts) in catalogue %s",
			provider, model, at.Format(time.RFC3339), cat.Version())
	}
	fmt.Fprintf(w, "%s %s at %s\n  model:    %s\n  version:  %s\n  tokens:   %+v\n", provider, model, at.Format(time.RFC3339), q.Model, q.Version, t)
	for _, u := range unitCosts {
		fmt.Fprintf(w, "  unit:     %s × %d = %s USD\n", u.Key, u.Count, u.Cost)
	}
	fmt.Fprintf(w, "  cost:     %s USD\n  savings:  %s USD\n  catalogue %s\n", q.Cost, q.Savings, cat.Version())
	return nil
}

// maxImportSize bounds the LiteLLM file read; the real one is about 1 MiB.
const maxImportSize = 64 << 20

// pricingImportLiteLLM converts a LiteLLM model_prices_and_context_window.json into pricing
// files in a directory, and prints what it left out or adjusted.
func pricingImportLiteLLM(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("pricing import litellm", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	effText := fs.String("effective", time.Now().UTC().Format(time.DateOnly), "date from which the imported prices apply (YYYY-MM-DD)")
	source := fs.String("source", "", `source line of the files (default: "LiteLLM <file>, imported <today>")`)
	out := fs.String("out", "pricing-import", "directory to write one YAML file per provider into")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return errors.New("usage: tokenmeter pricing import litellm [-effective DATE] [-source TEXT] [-out DIR] FILE")
	}
	eff, err := time.Parse(time.DateOnly, *effText)
	if err != nil {
		return fmt.Errorf("-effective %q: not a YYYY-MM-DD date", *effText)
	}
	name := fs.Arg(0)
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("import litellm: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImportSize+1))
	if err != nil {
		return fmt.Errorf("import litellm: read %s: %w", name, err)
	}
	if len(data) > maxImportSize {
		return fmt.Errorf("import litellm: %s is larger than %d bytes", name, maxImportSize)
	}
	if *source == "" {
		*source = fmt.Sprintf("LiteLLM %s, imported %s", filepath.Base(name), time.Now().UTC().Format(time.DateOnly))
	}
	res, err := litellm.Convert(data, litellm.Options{Effective: eff, Source: *source})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("import litellm: %w", err)
	}
	names := make([]string, 0, len(res.Files))
	for n := range res.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := filepath.Join(*out, n)
		if err := os.WriteFile(p, res.Files[n], 0o644); err != nil {
			return fmt.Errorf("import litellm: %w", err)
		}
		fmt.Fprintf(w, "wrote %s\n", p)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "ok: %d models in %d files, %d notes\n", res.Models, len(res.Files), len(res.Notes))
	return nil
}
