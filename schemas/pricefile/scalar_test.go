package pricefile

import (
	"testing"
	"time"
)

func TestScalar(t *testing.T) {
	var v struct {
		A Scalar `yaml:"a"`
		B Scalar `yaml:"b"`
		C Scalar `yaml:"c"`
		D Scalar `yaml:"d"`
	}
	if err := decodeInto([]byte("a: 2.50\nb: 2024-10-01\nc: \"0.0375\"\nd:\n"), &v); err != nil {
		t.Fatal(err)
	}
	want := [4]Scalar{{"2.50", true}, {"2024-10-01", true}, {"0.0375", true}, {}}
	if got := [4]Scalar{v.A, v.B, v.C, v.D}; got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
}

func TestModelRowAt(t *testing.T) {
	day := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	m := Model{Name: "m", Prices: []Price{{Effective: day("2024-05-13")}, {Effective: day("2024-10-01")}}}
	for _, tt := range []struct{ at, want string }{
		{"2024-01-01", "2024-05-13"}, // none in force yet: the first
		{"2024-09-30", "2024-05-13"},
		{"2024-10-01", "2024-10-01"},
		{"2030-01-01", "2024-10-01"},
	} {
		if got := m.RowAt(day(tt.at)).Effective.Format(time.DateOnly); got != tt.want {
			t.Errorf("RowAt(%s) = row %s, want %s", tt.at, got, tt.want)
		}
	}
}
