package pricefile

import (
	"errors"
	"math"
	"testing"
)

func TestParseUSDPerMillion(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want PicoUSD
	}{
		{"0", 0},
		{"0.0", 0},
		{"2.50", 2_500_000},
		{"2.5", 2_500_000},
		{"10", 10_000_000},
		{"0.0375", 37_500},
		{"0.000001", 1},
		{"1.234567", 1_234_567},
		{"007.5", 7_500_000},
		{"5000", 5_000_000_000},
		{"5000.000000", 5_000_000_000},
	} {
		got, err := ParseUSDPerMillion(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseUSDPerMillion(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
		}
	}
}

func TestParseUSDPerMillionErrors(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr error
		wantMsg string
	}{
		{"", ErrNotDecimal, `"": not a decimal`},
		{"2.5x", ErrNotDecimal, `"2.5x": not a decimal`},
		{".5", ErrNotDecimal, `".5": not a decimal`},
		{"5.", ErrNotDecimal, `"5.": not a decimal`},
		{"1.2.3", ErrNotDecimal, `"1.2.3": not a decimal`},
		{"+1", ErrNotDecimal, `"+1": not a decimal`},
		{"1e-6", ErrNotDecimal, `"1e-6": not a decimal`},
		{"1_000", ErrNotDecimal, `"1_000": not a decimal`},
		{" 1", ErrNotDecimal, `" 1": not a decimal`},
		{"-", ErrNotDecimal, `"-": not a decimal`},
		{"--1", ErrNotDecimal, `"--1": not a decimal`},
		{"-x", ErrNotDecimal, `"-x": not a decimal`},
		{"-1", ErrNegative, `"-1": negative`},
		{"-0.5", ErrNegative, `"-0.5": negative`},
		{"-99999", ErrNegative, `"-99999": negative`},
		{"0.0000001", ErrTooPrecise, `"0.0000001": more than 6 decimals`},
		{"2.5000000", ErrTooPrecise, `"2.5000000": more than 6 decimals`},
		{"5000.000001", ErrTooHigh, `"5000.000001": above 5000 USD per 1M tokens`},
		{"5001", ErrTooHigh, `"5001": above 5000 USD per 1M tokens`},
		{"99999999999999999999999", ErrTooHigh, `"99999999999999999999999": above 5000 USD per 1M tokens`},
	} {
		got, err := ParseUSDPerMillion(tt.in)
		if !errors.Is(err, tt.wantErr) || err.Error() != tt.wantMsg {
			t.Errorf("ParseUSDPerMillion(%q) = %d, %v; want error %q", tt.in, got, err, tt.wantMsg)
		}
	}
}

func TestPicoUSDString(t *testing.T) {
	for _, tt := range []struct {
		in   PicoUSD
		want string
	}{
		{0, "0.000000000000"},
		{1, "0.000000000001"},
		{2_500_000, "0.000002500000"},
		{1_000_000_000_000, "1.000000000000"},
		{12_345_678_901_234_567, "12345.678901234567"},
		{-37_500, "-0.000000037500"},
		{math.MaxInt64, "9223372.036854775807"},
		{math.MinInt64, "-9223372.036854775808"},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("PicoUSD(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

func TestPicoUSDPerMillion(t *testing.T) {
	for _, tt := range []struct {
		in   PicoUSD
		want string
	}{
		{0, "0.00"},
		{2_500_000, "2.50"},
		{37_500, "0.0375"},
		{10_000_000, "10.00"},
		{1, "0.000001"},
		{1_234_567_891, "1234.567891"},
	} {
		if got := tt.in.USDPerMillion(); got != tt.want {
			t.Errorf("PicoUSD(%d).USDPerMillion() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}
