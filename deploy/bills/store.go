package bills

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Run identifies one import: its id (shown in provider_usage.import_id), its version (the
// highest version of a period wins) and when it ran.
type Run struct {
	ID      string
	Version uint64
	At      time.Time
}

// NewRun returns the run of an import starting at now; its version is now in nanoseconds.
func NewRun(now time.Time) Run {
	now = now.UTC()
	return Run{ID: runID(uint64(now.UnixNano())), Version: uint64(now.UnixNano()), At: now.Truncate(time.Second)}
}

// runID names the import of a version: the instant it stands for.
func runID(version uint64) string {
	return "bills-" + time.Unix(0, int64(version)).UTC().Format("20060102T150405.000000000Z")
}

// Result counts what Store did.
type Result struct {
	Periods   int // periods in the report
	Written   int // periods written: new, or changed since their latest import
	Unchanged int // periods equal to their latest import, not written
	Rows      int // rows written
}

type periodKey struct {
	source string
	day    string
}

// Store writes the periods of rep whose content differs from their latest import in db:
// first their rows, then one provider_usage_imports record per period, which makes them
// count. A period the report holds without rows is written too (if it was not already
// empty): the provider now reports nothing for that day. Storing the same report twice
// writes nothing the second time.
func Store(ctx context.Context, conn driver.Conn, db string, rep Report, run Run) (Result, error) {
	res := Result{Periods: len(rep.Periods)}
	if len(rep.Periods) == 0 {
		return res, nil
	}
	byPeriod := map[periodKey][]Row{}
	complete := map[periodKey]bool{}
	var keys []periodKey
	for _, p := range rep.Periods {
		k := periodKey{p.Source, p.Day.Format(time.DateOnly)}
		if _, dup := complete[k]; dup {
			return res, fmt.Errorf("the report holds period %s %s twice", k.source, k.day)
		}
		complete[k] = p.Complete
		keys = append(keys, k)
	}
	for _, r := range rep.Rows {
		k := periodKey{r.Source, r.Day.Format(time.DateOnly)}
		if _, ok := complete[k]; !ok {
			return res, fmt.Errorf("a row of %s %s lies outside the periods of the report", k.source, k.day)
		}
		byPeriod[k] = append(byPeriod[k], r)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].source != keys[j].source {
			return keys[i].source < keys[j].source
		}
		return keys[i].day < keys[j].day
	})
	latest, err := latestHashes(ctx, conn, db, keys)
	if err != nil {
		return res, err
	}
	// The latest import must win even when clocks step back or two runs share a nanosecond
	// (a test's fixed clock): a version at or below one already stored moves past it.
	var highest uint64
	if err := conn.QueryRow(ctx, "SELECT max(import_version) FROM "+db+".provider_usage_imports").Scan(&highest); err != nil {
		return res, fmt.Errorf("read the highest import version of %s.provider_usage_imports: %w", db, err)
	}
	if run.Version <= highest {
		run.Version = highest + 1
		run.ID = runID(run.Version)
	}
	var changed []periodKey
	hashes := map[periodKey]string{}
	for _, k := range keys {
		rows := byPeriod[k]
		sortRows(rows)
		h := contentHash(rows, complete[k])
		if latest[k] == h {
			res.Unchanged++
			continue
		}
		hashes[k] = h
		changed = append(changed, k)
	}
	if len(changed) == 0 {
		return res, nil
	}
	rows, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".provider_usage_rows (day, source, provider, model, project, api_key, service_tier, token_class, line_item, tokens, cost_usd, import_id, import_version)")
	if err != nil {
		return res, fmt.Errorf("prepare the insert into %s.provider_usage_rows: %w", db, err)
	}
	n := 0
	for _, k := range changed {
		for _, r := range byPeriod[k] {
			if err := rows.Append(r.Day, r.Source, r.Provider, r.Model, r.Project, r.APIKey, r.ServiceTier, r.TokenClass, r.LineItem, r.Tokens, r.CostUSD, run.ID, run.Version); err != nil {
				_ = rows.Abort()
				return res, fmt.Errorf("append a row of %s %s: %w", k.source, k.day, err)
			}
			n++
		}
	}
	if n > 0 {
		if err := rows.Send(); err != nil {
			return res, fmt.Errorf("insert %d rows into %s.provider_usage_rows: %w", n, db, err)
		}
	} else {
		_ = rows.Abort()
	}
	imports, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".provider_usage_imports (source, day, import_id, import_version, imported_at, rows, complete, content_hash)")
	if err != nil {
		return res, fmt.Errorf("prepare the insert into %s.provider_usage_imports: %w", db, err)
	}
	for _, k := range changed {
		d, _ := time.Parse(time.DateOnly, k.day)
		var c uint8
		if complete[k] {
			c = 1
		}
		if err := imports.Append(k.source, d, run.ID, run.Version, run.At, uint64(len(byPeriod[k])), c, hashes[k]); err != nil {
			_ = imports.Abort()
			return res, fmt.Errorf("append the import record of %s %s: %w", k.source, k.day, err)
		}
	}
	if err := imports.Send(); err != nil {
		return res, fmt.Errorf("insert %d import records into %s.provider_usage_imports (the rows are written but do not count; run the import again): %w", len(changed), db, err)
	}
	res.Written, res.Rows = len(changed), n
	return res, nil
}

// latestHashes returns the content hash of the latest import of each of the periods.
func latestHashes(ctx context.Context, conn driver.Conn, db string, keys []periodKey) (map[periodKey]string, error) {
	sources := map[string]bool{}
	minDay, maxDay := keys[0].day, keys[0].day
	for _, k := range keys {
		sources[k.source] = true
		minDay, maxDay = min(minDay, k.day), max(maxDay, k.day)
	}
	var list []string
	for s := range sources {
		list = append(list, s)
	}
	sort.Strings(list)
	q := "SELECT source, toString(day), argMax(content_hash, import_version) FROM " + db + ".provider_usage_imports " +
		"WHERE has(?, source) AND day >= toDate(?) AND day <= toDate(?) GROUP BY source, day"
	rs, err := conn.Query(ctx, q, list, minDay, maxDay)
	if err != nil {
		return nil, fmt.Errorf("read the latest imports of %s .. %s from %s.provider_usage_imports: %w", minDay, maxDay, db, err)
	}
	defer rs.Close()
	out := map[periodKey]string{}
	for rs.Next() {
		var k periodKey
		var h string
		if err := rs.Scan(&k.source, &k.day, &h); err != nil {
			return nil, fmt.Errorf("read the latest imports from %s.provider_usage_imports: %w", db, err)
		}
		out[k] = h
	}
	return out, errors.Join(rs.Err())
}

// contentHash is the SHA-256 of a period's sorted rows and whether it is complete.
func contentHash(rows []Row, complete bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "complete=%v\n", complete)
	for _, r := range rows {
		h.Write([]byte(rowKey(r)))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
