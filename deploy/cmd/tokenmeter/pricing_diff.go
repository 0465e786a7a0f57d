package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/enricher/pricing/genaiprices"
	"github.com/tokenmeter/tokenmeter/enricher/pricing/litellm"
	"github.com/tokenmeter/tokenmeter/enricher/pricing/refdiff"
)

const pricingDiffUsage = "usage: tokenmeter pricing diff litellm [-pricing DIR] [-at DATE] [-notes] model_prices_and_context_window.json\n" +
	"       tokenmeter pricing diff genai-prices [-pricing DIR] [-at DATE] [-notes] DIR (genai-prices' prices/providers, or its repository)"

// pricingDiff prints, for every model of the catalogue whose price in force at -at differs
// from a reference's, one line per differing field, then a summary. Fields the reference
// does not state are not compared.
func pricingDiff(w io.Writer, args []string) error {
	if len(args) == 0 || (args[0] != "litellm" && args[0] != "genai-prices") {
		return errors.New(pricingDiffUsage)
	}
	kind := args[0]
	fs := flag.NewFlagSet("pricing diff", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("pricing", os.Getenv("TOKENMETER_PRICING_DIR"), "directory of pricing files (default: the shipped catalogue)")
	atText := fs.String("at", "", "compare the rows in force on this date, YYYY-MM-DD (default: today)")
	notes := fs.Bool("notes", false, "also print what the reader left out of the reference, and why")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 1 {
		return errors.New(pricingDiffUsage)
	}
	at, files, err := pricingRows(*atText, *dir)
	if err != nil {
		return err
	}
	cat, err := pricing.New(files...)
	if err != nil {
		return err
	}
	var ref refdiff.Reference
	var left []string
	switch kind {
	case "litellm":
		data, err := readLimited(fs.Arg(0))
		if err != nil {
			return fmt.Errorf("pricing diff litellm: %w", err)
		}
		entries, n, err := litellm.Entries(data)
		if err != nil {
			return err
		}
		ref, left = refdiff.NewByName(cat, entries), n
	default:
		root := fs.Arg(0)
		if st, err := os.Stat(filepath.Join(root, "prices", "providers")); err == nil && st.IsDir() {
			root = filepath.Join(root, "prices", "providers")
		}
		providers, n, err := genaiprices.ReadDir(os.DirFS(root))
		if err != nil {
			return fmt.Errorf("pricing diff genai-prices %s: %w", root, err)
		}
		ref, left = genaiprices.NewReference(providers, cat), n
	}
	res := refdiff.Diff(files, ref, at)
	for _, d := range res.Differences {
		fmt.Fprintln(w, d)
	}
	if *notes {
		for _, n := range left {
			fmt.Fprintf(w, "note: %s\n", n)
		}
	}
	fmt.Fprintf(w, "%s: %d models compared, %d differ (%d fields), %d not in the reference, %d reference entries left out\n",
		kind, res.Compared, res.Differing, len(res.Differences), res.Missing, len(left))
	return nil
}

// readLimited reads a reference file of at most maxImportSize bytes.
func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImportSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxImportSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxImportSize)
	}
	return data, nil
}
