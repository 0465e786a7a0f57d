package event

// NormalizedTagLen is how long a normalised tag value is at most by default: the enricher
// cuts attribution values to it unless its attribution file says otherwise.
const NormalizedTagLen = 64

// NormalizeTag is the normalisation the enricher applies to attribution tags (team, feature,
// env, cost_center): it trims s, lower-cases it, turns every run of characters outside
// [a-z0-9_.-] into one "-", drops leading and trailing "-", and cuts the result to max bytes.
// "Payments Team " and "payments-team" are one team. Whatever compares tag values with what
// the enricher stores — the collector's budget caps — compares them through it.
func NormalizeTag(s string, max int) string {
	var b []byte
	dash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			if dash && len(b) > 0 {
				b = append(b, '-')
			}
			dash = false
			b = append(b, c)
			continue
		}
		dash = true
	}
	for len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) > max {
		b = b[:max]
	}
	for len(b) > 0 && b[len(b)-1] == '-' {
		b = b[:len(b)-1]
	}
	return string(b)
}
