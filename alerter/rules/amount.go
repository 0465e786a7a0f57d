package rules

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// PicoPerUSD is the number of picodollars in one US dollar.
const PicoPerUSD = 1_000_000_000_000

// maxAmount bounds every amount a rules file may state: 9,000,000 USD in picodollars, or
// 9·10^18 tokens or requests. int64 holds ±9.2·10^18.
const maxAmount = 9_000_000 * PicoPerUSD

// parseDecimal converts a plain non-negative decimal ("2", "0.5", "1000.25") into an integer
// scaled by 10^scale, exactly: "2.5" with scale 3 is 2500. More decimals than scale, signs,
// exponents and spaces are errors.
func parseDecimal(s string, scale int) (int64, error) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || !digits(intPart) || (hasDot && (frac == "" || !digits(frac))) {
		return 0, fmt.Errorf("%q is not a plain decimal number", s)
	}
	if len(frac) > scale {
		return 0, fmt.Errorf("%q has more than %d decimals", s, scale)
	}
	var v int64
	for i := 0; i < len(intPart); i++ {
		d := int64(intPart[i] - '0')
		if v > (maxAmount-d)/10 {
			return 0, fmt.Errorf("%q is too large", s)
		}
		v = v*10 + d
	}
	for i := 0; i < scale; i++ {
		d := int64(0)
		if i < len(frac) {
			d = int64(frac[i] - '0')
		}
		if v > (maxAmount-d)/10 {
			return 0, fmt.Errorf("%q is too large", s)
		}
		v = v*10 + d
	}
	return v, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatUSD prints picodollars as USD with the fewest decimals that keep it exact, at least
// two: 1500000000000 is "1.50", 1 is "0.000000000001".
func FormatUSD(pico int64) string {
	neg := pico < 0
	u := uint64(pico)
	if neg {
		u = -u
	}
	s := fmt.Sprintf("%d.%012d", u/PicoPerUSD, u%PicoPerUSD)
	s = strings.TrimRight(s, "0")
	if i := strings.IndexByte(s, '.'); len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	if neg {
		s = "-" + s
	}
	return s
}

// FormatMilli prints a value scaled by 1000 ("2500" → "2.5").
func FormatMilli(v int64) string {
	s := fmt.Sprintf("%d.%03d", v/1000, v%1000)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

// ErrOverflow is returned by MulDiv when the result does not fit an int64.
var ErrOverflow = errors.New("overflows int64")

// MulDiv returns a·b/c for non-negative a, b and positive c, rounding down, computed with a
// 128-bit intermediate so that picodollar amounts times per-mille factors cannot overflow
// on the way. A result beyond int64 saturates to the largest int64 and returns ErrOverflow.
func MulDiv(a, b, c int64) (int64, error) {
	if a < 0 || b < 0 || c <= 0 {
		return 0, fmt.Errorf("MulDiv(%d, %d, %d): want a, b ≥ 0 and c > 0", a, b, c)
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return 1<<63 - 1, ErrOverflow
	}
	q, _ := bits.Div64(hi, lo, uint64(c))
	if q > 1<<63-1 {
		return 1<<63 - 1, ErrOverflow
	}
	return int64(q), nil
}
