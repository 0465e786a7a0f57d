package dedup

import (
	"strconv"

	"github.com/go-faster/city"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// Fingerprint returns the content fingerprint of r: what the event says about money and
// attribution (time to the millisecond, provider, model, service tier, team, feature, env,
// cost centre, traffic, every token count, cache hit), not what the enricher derived from it,
// so a copy priced again with another price file has the same fingerprint.
//
// It equals the content_fp column that ClickHouse computes for the stored row (migration
// 0040): cityHash64 — CityHash64 1.0.2, city.CH64 — of the fields as ClickHouse's toString
// prints them, joined by NUL bytes. Validation keeps NUL out of every string, so the joined
// text is unambiguous. Any change here needs a new migration redefining the column.
func Fingerprint(r *batch.Row) uint64 {
	var buf [512]byte
	b := buf[:0]
	ms := r.Time.UnixMilli()
	sec := ms / 1000
	if ms%1000 < 0 {
		sec--
	}
	sep := func() { b = append(b, 0) }
	b = strconv.AppendUint(b, uint64(uint32(sec)), 10)
	sep()
	b = strconv.AppendInt(b, ms-sec*1000, 10)
	for _, s := range [...]string{r.Provider, r.Model, r.ServiceTier, r.Team, r.Feature, r.Env, r.CostCenter, r.Traffic} {
		sep()
		b = append(b, s...)
	}
	for _, n := range [...]int64{r.Tokens.Input, r.Tokens.Output, r.Tokens.CachedInput, r.Tokens.CacheWrite, r.Tokens.CacheWrite1h, r.Tokens.Reasoning} {
		sep()
		b = strconv.AppendUint(b, uint64(max(n, 0)), 10)
	}
	sep()
	if r.CacheHit {
		b = append(b, '1')
	} else {
		b = append(b, '0')
	}
	return city.CH64(b)
}
