package pricefile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// PicoUSD is an exact amount of money in picodollars (1 pico = 1e-12 USD). A price of
// x USD per 1M tokens is x·10^6 PicoUSD per token, so every price with at most 6 decimals is
// an integer here, and a cost is an integer sum of integer products: no float64 anywhere
// (DESIGN.md §2.5).
//
// An int64 holds ±9.2·10^6 USD. The largest cost of one valid call is
// 2·10^8 tokens × 5·10^9 PicoUSD (MaxUSDPerMillion) = 10^18, so one call never overflows;
// sums over many calls belong in wider types (ClickHouse Decimal).
type PicoUSD int64

// MaxUSDPerMillion is the highest price a pricing file may state, in USD per 1M tokens. No
// list price comes close; anything above is a typo (a price per 1K or per token).
const MaxUSDPerMillion = 5000

// String prints the exact amount in USD with 12 decimals, e.g. "0.000002500000".
func (p PicoUSD) String() string {
	u := uint64(p)
	sign := ""
	if p < 0 {
		sign, u = "-", -u // two's complement: correct for math.MinInt64 too
	}
	return fmt.Sprintf("%s%d.%012d", sign, u/1e12, u%1e12)
}

// USDPerMillion prints a per-token price as USD per 1M tokens the way pricing files write
// it: at least two decimals, no trailing zeros beyond them ("2.50", "0.0375", "0.00").
func (p PicoUSD) USDPerMillion() string {
	s := p.perMillion()
	for strings.HasSuffix(s, "0") && len(s)-strings.IndexByte(s, '.') > 3 {
		s = s[:len(s)-1]
	}
	return s
}

// USDPerUnit prints a per-unit price (Rates.Units) as USD per unit the way pricing files
// write it: at least two decimals, no trailing zeros beyond them ("0.01", "0.167", "10.00").
func (p PicoUSD) USDPerUnit() string {
	s := p.String()
	for strings.HasSuffix(s, "0") && len(s)-strings.IndexByte(s, '.') > 3 {
		s = s[:len(s)-1]
	}
	return s
}

// perMillion prints a per-token price as USD per 1M tokens with 6 decimals, the unit in
// which pricing files state it.
func (p PicoUSD) perMillion() string {
	return fmt.Sprintf("%d.%06d", p/1e6, p%1e6)
}

// Errors of ParseUSDPerMillion. They are wrapped with the offending string.
var (
	// ErrNotDecimal: the string is not digits with an optional fraction ("2.50", "10", "0.0375").
	ErrNotDecimal = errors.New("not a decimal")
	// ErrNegative: the price is below zero.
	ErrNegative = errors.New("negative")
	// ErrTooPrecise: more than 6 decimals, i.e. a fraction of a picodollar per token.
	ErrTooPrecise = errors.New("more than 6 decimals")
	// ErrTooHigh: above MaxUSDPerMillion.
	ErrTooHigh = errors.New("above " + strconv.Itoa(MaxUSDPerMillion) + " USD per 1M tokens")
)

// maxPrice is MaxUSDPerMillion in PicoUSD per token.
const maxPrice PicoUSD = MaxUSDPerMillion * 1_000_000

// ParseUSDPerMillion converts a price in USD per 1M tokens, written as a plain decimal
// ("2.50", "10", "0.000001"), exactly into PicoUSD per token. It accepts digits with an
// optional "." and 1 to 6 decimals, from 0 up to MaxUSDPerMillion; signs, exponents,
// underscores and spaces are rejected. The error reads `"2.5x": not a decimal` and wraps one
// of ErrNotDecimal, ErrNegative, ErrTooPrecise or ErrTooHigh.
func ParseUSDPerMillion(s string) (PicoUSD, error) {
	return parseFixed(s, 6, MaxUSDPerMillion, ErrTooPrecise, ErrTooHigh)
}

// MaxUSDPerUnit is the highest price per unit (a web search, an image, a request) a pricing
// file may state. The dearest list price is a fraction of a dollar; with it, the units of one
// call (event.MaxUnitKeys × event.MaxUnitCount × 10 USD = 1.6·10^18 PicoUSD) and its tokens
// (10^18, above) fit an int64 together.
const MaxUSDPerUnit = 10

// Errors of ParseUSDPerUnit besides ErrNotDecimal and ErrNegative.
var (
	// ErrUnitTooPrecise: more than 12 decimals, i.e. a fraction of a picodollar per unit.
	ErrUnitTooPrecise = errors.New("more than 12 decimals")
	// ErrUnitTooHigh: above MaxUSDPerUnit.
	ErrUnitTooHigh = errors.New("above " + strconv.Itoa(MaxUSDPerUnit) + " USD per unit")
)

// ParseUSDPerUnit converts a price in USD per unit, written as a plain decimal ("0.01",
// "0.167"), exactly into PicoUSD per unit: digits with an optional "." and 1 to 12 decimals,
// from 0 up to MaxUSDPerUnit. The error wraps one of ErrNotDecimal, ErrNegative,
// ErrUnitTooPrecise or ErrUnitTooHigh.
func ParseUSDPerUnit(s string) (PicoUSD, error) {
	return parseFixed(s, 12, MaxUSDPerUnit, ErrUnitTooPrecise, ErrUnitTooHigh)
}

// parseFixed converts a plain decimal of at most decimals decimals and at most maxWhole into
// an integer count of its smallest unit, 10^-decimals. The errors wrap ErrNotDecimal,
// ErrNegative, tooPrecise or tooHigh.
func parseFixed(s string, decimals int, maxWhole int64, tooPrecise, tooHigh error) (PicoUSD, error) {
	if len(s) > 1 && s[0] == '-' {
		if _, err := parseFixed(s[1:], decimals, maxWhole, tooPrecise, tooHigh); err == nil || errors.Is(err, tooHigh) || errors.Is(err, tooPrecise) {
			return 0, fmt.Errorf("%q: %w", s, ErrNegative)
		}
		return 0, fmt.Errorf("%q: %w", s, ErrNotDecimal)
	}
	intPart, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			if frac == "" {
				return 0, fmt.Errorf("%q: %w", s, ErrNotDecimal)
			}
			break
		}
	}
	if intPart == "" || !allDigits(intPart) || !allDigits(frac) {
		return 0, fmt.Errorf("%q: %w", s, ErrNotDecimal)
	}
	if len(frac) > decimals {
		return 0, fmt.Errorf("%q: %w", s, tooPrecise)
	}
	var whole int64 // stops growing past the cap, so never overflows
	for i := 0; i < len(intPart); i++ {
		whole = whole*10 + int64(intPart[i]-'0')
		if whole > maxWhole {
			return 0, fmt.Errorf("%q: %w", s, tooHigh)
		}
	}
	var fraction, scale int64 = 0, 1
	for i := 0; i < decimals; i++ {
		fraction *= 10
		scale *= 10
		if i < len(frac) {
			fraction += int64(frac[i] - '0')
		}
	}
	p := whole*scale + fraction
	if p > maxWhole*scale {
		return 0, fmt.Errorf("%q: %w", s, tooHigh)
	}
	return PicoUSD(p), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
