package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

const pricingListUsage = "usage: tokenmeter pricing list [-pricing DIR] [-provider P] [-at DATE]"

// pricingList prints one line per model of the catalogue: its provider, name and aliases, the
// price row in force at -at (its effective date, every token class in every tier it prices,
// long context included) and when that row was checked against which references.
func pricingList(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("pricing list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("pricing", os.Getenv("TOKENMETER_PRICING_DIR"), "directory of pricing files (default: the shipped catalogue)")
	provider := fs.String("provider", "", "list only this provider's models (case-insensitive)")
	atText := fs.String("at", "", "show the row in force on this date, YYYY-MM-DD (default: today)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errors.New(pricingListUsage)
	}
	at, files, err := pricingRows(*atText, *dir)
	if err != nil {
		return err
	}
	slices.SortFunc(files, func(a, b pricefile.File) int { return strings.Compare(a.Provider, b.Provider) })
	n := 0
	for _, f := range files {
		if *provider != "" && !strings.EqualFold(f.Provider, *provider) {
			continue
		}
		models := slices.Clone(f.Models)
		slices.SortFunc(models, func(a, b pricefile.Model) int { return strings.Compare(a.Name, b.Name) })
		for _, m := range models {
			fmt.Fprintln(w, listLine(f.Provider, m, m.RowAt(at)))
			n++
		}
	}
	if n == 0 && *provider != "" {
		return fmt.Errorf("pricing list: no models of provider %q", *provider)
	}
	return nil
}

// pricingRows parses -at (a date, default today) and reads the provider files of dir, for
// list and diff.
func pricingRows(atText, dir string) (time.Time, []pricefile.File, error) {
	at := time.Now().UTC()
	if atText != "" {
		var err error
		if at, err = time.Parse(time.DateOnly, atText); err != nil {
			return at, nil, fmt.Errorf("-at %q: not a YYYY-MM-DD date", atText)
		}
	}
	files, err := pricingFiles(dir)
	return at, files, err
}

// pricingFiles reads the provider files of dir, or of the shipped catalogue when dir is "".
func pricingFiles(dir string) ([]pricefile.File, error) {
	if dir == "" {
		return pricing.DefaultFiles()
	}
	d, err := pricing.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	return d.Files()
}

func listLine(provider string, m pricefile.Model, p pricefile.Price) string {
	var b strings.Builder
	aliases := "-"
	if len(m.Aliases) > 0 {
		aliases = strings.Join(m.Aliases, ",")
	}
	fmt.Fprintf(&b, "%s %s aliases=%s effective=%s standard[%s]", provider, m.Name, aliases,
		p.Effective.Format(time.DateOnly), listRates(p.Standard))
	for _, t := range pricefile.Tiers {
		if r, ok := p.Tiers[t]; ok {
			fmt.Fprintf(&b, " %s[%s]", t, listRates(r))
		}
	}
	if lc := p.LongContext; lc != nil {
		fmt.Fprintf(&b, " long>%d[%s]", lc.Above, listRates(lc.Standard))
		for _, t := range pricefile.Tiers {
			if r, ok := lc.Tiers[t]; ok {
				fmt.Fprintf(&b, " long>%d/%s[%s]", lc.Above, t, listRates(r))
			}
		}
	}
	checked, refs := "-", "-"
	if !p.Checked.IsZero() {
		checked = p.Checked.Format(time.DateOnly)
	}
	if len(p.Refs) > 0 {
		refs = strings.Join(p.Refs, ",")
	}
	fmt.Fprintf(&b, " checked=%s refs=%s", checked, refs)
	return b.String()
}

// listRates writes every token class of a tier, in USD per 1M tokens, then the audio rates and
// the units the row prices (in USD per unit), when it has any.
func listRates(r pricefile.Rates) string {
	s := fmt.Sprintf("input=%s cached_input=%s cache_write=%s cache_write_1h=%s output=%s reasoning=%s",
		r.Input.USDPerMillion(), r.CachedInput.USDPerMillion(), r.CacheWrite.USDPerMillion(),
		r.CacheWrite1h.USDPerMillion(), r.Output.USDPerMillion(), r.Reasoning.USDPerMillion())
	for _, k := range slices.Sorted(maps.Keys(r.Units)) {
		switch k {
		case event.UnitAudioInputTokens:
			s += " audio_input=" + r.Units[k].USDPerMillion()
		case event.UnitAudioOutputTokens:
			s += " audio_output=" + r.Units[k].USDPerMillion()
		default:
			s += " " + k + "=" + r.Units[k].USDPerUnit() + "/unit"
		}
	}
	return s
}
