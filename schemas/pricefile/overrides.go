package pricefile

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Overrides is one parsed organisation overrides file: what this organisation pays where it
// differs from list prices, and the names only it uses. The format (README.md has the same
// with comments):
//
//	organisation: acme-corp                 # optional, for people reading the file
//	source: "MSA with OpenAI, 2025-07"      # optional: where the numbers come from
//	discounts:                              # percentage off list prices
//	  - {provider: openai, percent: "10", effective: 2025-07-01}                # every model
//	  - {provider: openai, model: gpt-4o, percent: "20", effective: 2025-07-01} # wins over the above
//	  - {provider: openai, percent: "0", effective: 2026-07-01}                 # ends the first
//	models:                                 # explicit rates: negotiated, fine-tuned, private
//	  - provider: openai
//	    model: ft:gpt-4o-mini-2024-07-18:acme::b1
//	    prices: [{effective: 2025-01-01, input: "0.30", output: "1.20"}]
//	deployments:                            # Azure deployment names
//	  - {provider: azure, name: prod-gpt4o-eastus, model: gpt-4o}
//
// A models entry for a model the provider's file lists replaces its list prices from the
// entry's first effective date on (list prices before it stay), and discounts never apply to
// it: explicit rates are what the organisation pays. An entry for a model the file does not
// list, or for a provider no file prices, is a private model. Every other rule of a price
// row (tiers, long_context, defaults) is the same as in a pricing file.
type Overrides struct {
	// Name is the file name given to ParseOverrides, used in errors.
	Name         string
	Organisation string
	Source       string
	Discounts    []Discount
	Models       []ProviderModel
	Deployments  []Deployment
}

// Discount takes Percent off every list price of Model (or, when Model is empty, of every
// model of Provider) from Effective until the next discount for the same provider and model.
type Discount struct {
	Provider, Model string
	Effective       time.Time
	// Percent as written ("12.5"); BasisPoints the same in hundredths of a percent (1250).
	Percent     string
	BasisPoints int64
}

// Apply returns p less the discount of bp basis points, rounded to the nearest picodollar
// (half up). Prices of at most 4 decimals in USD per 1M tokens are always exact.
func Apply(p PicoUSD, bp int64) PicoUSD {
	return (p*PicoUSD(10_000-bp) + 5_000) / 10_000
}

// ProviderModel is a model with explicit prices for one provider.
type ProviderModel struct {
	Provider string
	Model    Model
}

// Deployment names a model by the deployment name an organisation gave it (Azure OpenAI
// reports the deployment, not the model).
type Deployment struct {
	Provider, Name, Model string
}

// ParseOverrides decodes and validates an overrides file called name. Like Parse, it reports
// every problem it finds, each naming the file and the entry.
func ParseOverrides(name string, data []byte) (Overrides, error) {
	var raw rawOverrides
	if err := decodeInto(data, &raw); err != nil {
		return Overrides{}, fmt.Errorf("%s: %w", name, err)
	}
	p := parser{name: name}
	o := Overrides{Name: name, Organisation: raw.Organisation, Source: raw.Source}
	if len(raw.Discounts)+len(raw.Models)+len(raw.Deployments) == 0 {
		p.errorf("no discounts, models or deployments")
	}
	type dkey struct {
		provider, model string
		at              time.Time
	}
	seen := map[dkey]bool{}
	for i, rd := range raw.Discounts {
		where := fmt.Sprintf("discount #%d", i+1)
		d := Discount{Provider: rd.Provider, Model: rd.Model, Percent: rd.Percent.text}
		ok := true
		if rd.Provider == "" {
			p.errorf("%s: provider: missing", where)
			ok = false
		}
		if !rd.Effective.set {
			p.errorf("%s: effective: missing", where)
			ok = false
		} else if eff, err := time.Parse(time.DateOnly, rd.Effective.text); err != nil {
			p.errorf("%s: effective %q: not a date (want YYYY-MM-DD)", where, rd.Effective.text)
			ok = false
		} else {
			d.Effective = eff
		}
		if !rd.Percent.set {
			p.errorf("%s: percent: missing", where)
			ok = false
		} else if bp, err := parseBasisPoints(rd.Percent.text); err != nil {
			p.errorf("%s: percent %q: %v", where, rd.Percent.text, err)
			ok = false
		} else {
			d.BasisPoints = bp
		}
		if !ok {
			continue
		}
		k := dkey{lowerASCII(d.Provider), lowerASCII(d.Model), d.Effective}
		if seen[k] {
			p.errorf("%s: a discount for provider %q model %q effective %s is already given", where, d.Provider, d.Model, rd.Effective.text)
			continue
		}
		seen[k] = true
		o.Discounts = append(o.Discounts, d)
	}
	for i, rm := range raw.Models {
		if rm.Provider == "" {
			p.errorf("models #%d: provider: missing", i+1)
		}
		o.Models = append(o.Models, ProviderModel{Provider: rm.Provider, Model: p.model(i, rawModel{Model: rm.Model, Aliases: rm.Aliases, Prices: rm.Prices})})
	}
	for i, rd := range raw.Deployments {
		where := fmt.Sprintf("deployment #%d", i+1)
		for _, f := range []struct{ field, v string }{{"provider", rd.Provider}, {"name", rd.Name}, {"model", rd.Model}} {
			if f.v == "" {
				p.errorf("%s: %s: missing", where, f.field)
			}
		}
		o.Deployments = append(o.Deployments, Deployment{Provider: rd.Provider, Name: rd.Name, Model: rd.Model})
	}
	slices.SortStableFunc(o.Discounts, func(a, b Discount) int { return a.Effective.Compare(b.Effective) })
	if err := errors.Join(p.errs...); err != nil {
		return Overrides{}, err
	}
	return o, nil
}

// parseBasisPoints reads a percentage from 0 to 100 with at most 2 decimals.
func parseBasisPoints(s string) (int64, error) {
	// A percentage is a price-like decimal: reuse the exact parser, which allows 6 decimals,
	// and require the last 4 to be zero.
	v, err := ParseUSDPerMillion(s)
	if err != nil {
		return 0, errors.New("not a percentage from 0 to 100 with at most 2 decimals")
	}
	if v%10_000 != 0 || v > 100_000_000 {
		return 0, errors.New("not a percentage from 0 to 100 with at most 2 decimals")
	}
	return int64(v / 10_000), nil
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

type rawOverrides struct {
	Organisation string             `yaml:"organisation"`
	Source       string             `yaml:"source"`
	Discounts    []rawDiscount      `yaml:"discounts"`
	Models       []rawProviderModel `yaml:"models"`
	Deployments  []rawDeployment    `yaml:"deployments"`
}

type rawDiscount struct {
	Provider  string  `yaml:"provider"`
	Model     string  `yaml:"model"`
	Percent   literal `yaml:"percent"`
	Effective literal `yaml:"effective"`
}

type rawProviderModel struct {
	Provider string     `yaml:"provider"`
	Model    string     `yaml:"model"`
	Aliases  []string   `yaml:"aliases"`
	Prices   []rawPrice `yaml:"prices"`
}

type rawDeployment struct {
	Provider string `yaml:"provider"`
	Name     string `yaml:"name"`
	Model    string `yaml:"model"`
}
