package event

import "testing"

func TestNormalizeTag(t *testing.T) {
	f := func(in string, max int, want string) {
		t.Helper()
		if got := NormalizeTag(in, max); got != want {
			t.Errorf("NormalizeTag(%q, %d) = %q, want %q", in, max, got, want)
		}
	}
	f("search", 64, "search")
	f(" Search ", 64, "search")
	f("SEARCH!", 64, "search")
	f("Payments Team ", 64, "payments-team")
	f("payments--team", 64, "payments--team")
	f("a  /  b", 64, "a-b")
	f("--x--", 64, "x")
	f("ÉQUIPE", 64, "quipe")
	f("abcdef-", 6, "abcdef")
	f("abcde-f", 6, "abcde")
	f("!!!", 64, "")
}
