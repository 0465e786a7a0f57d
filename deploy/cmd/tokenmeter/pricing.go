package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// runPricing implements "tokenmeter pricing validate FILE...": each file must parse on its
// own, and together they must form a catalogue without ambiguous model names.
func runPricing(args []string) error {
	if len(args) < 2 || args[0] != "validate" {
		return errors.New("usage: tokenmeter pricing validate FILE...")
	}
	var files []pricefile.File
	var errs []error
	for _, name := range args[1:] {
		data, err := os.ReadFile(name)
		if err != nil {
			errs = append(errs, err)
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
	cat, err := pricing.New(files...)
	if err != nil {
		return err
	}
	for _, f := range files {
		prices := 0
		for _, m := range f.Models {
			prices += len(m.Prices)
		}
		fmt.Printf("%s: provider %s, %d models, %d price rows\n", f.Name, f.Provider, len(f.Models), prices)
	}
	fmt.Printf("ok: catalogue version %s\n", cat.Version())
	return nil
}
