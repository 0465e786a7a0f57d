package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tokenmeter/tokenmeter/enricher/pricing"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

const pricingPublishUsage = "usage: tokenmeter pricing publish [-pricing DIR] [-clickhouse DSN] [-database DB] [-check-window DAYS]"

// defaultCheckWindowDays is how long a price row stays fresh after it was checked against
// public references, unless TOKENMETER_PRICE_CHECK_WINDOW_DAYS or -check-window says otherwise.
const defaultCheckWindowDays = 90

// priceRow is one price row of the catalogue as the table price_rows holds it.
type priceRow struct {
	// key names the row as the enricher's price versions do, up to their tier segment:
	// "openai/gpt-4o@2024-10-01" (pricing.Quote.Version "openai/gpt-4o@2024-10-01/batch").
	key             string
	provider, model string
	effective       time.Time
	// checked is zero when the row was never checked.
	checked time.Time
	refs    []string
	// rates are the row's prices of the token classes prompt caching involves, in each tier
	// it prices and, above its long-context threshold, in each again.
	rates []tierRates
}

// tierRates are a price row's rates in one tier, in picodollars per token. tier is the
// price version's segment after the row: "standard", "batch", "standard/long", ….
type tierRates struct {
	tier                                         string
	input, cachedInput, cacheWrite, cacheWrite1h pricefile.PicoUSD
}

// rowRates lays out the tiers of p: standard, then the others in pricefile.Tiers order, then
// the same above the long-context threshold.
func rowRates(p pricefile.Price) []tierRates {
	add := func(out []tierRates, tier string, r pricefile.Rates) []tierRates {
		return append(out, tierRates{tier, r.Input, r.CachedInput, r.CacheWrite, r.CacheWrite1h})
	}
	out := add(nil, event.TierStandard, p.Standard)
	for _, t := range pricefile.Tiers {
		if r, ok := p.Tiers[t]; ok {
			out = add(out, t, r)
		}
	}
	if lc := p.LongContext; lc != nil {
		out = add(out, event.TierStandard+"/long", lc.Standard)
		for _, t := range pricefile.Tiers {
			if r, ok := lc.Tiers[t]; ok {
				out = add(out, t+"/long", r)
			}
		}
	}
	return out
}

// catalogueRows returns every price row of the provider files, sorted by provider, model and
// effective date.
func catalogueRows(files []pricefile.File) []priceRow {
	var rows []priceRow
	for _, f := range files {
		for _, m := range f.Models {
			for _, p := range m.Prices {
				rows = append(rows, priceRow{
					key:      f.Provider + "/" + m.Name + "@" + p.Effective.Format(time.DateOnly),
					provider: f.Provider, model: m.Name, effective: p.Effective, checked: p.Checked, refs: p.Refs,
					rates: rowRates(p),
				})
			}
		}
	}
	slices.SortFunc(rows, func(a, b priceRow) int {
		if c := strings.Compare(a.provider, b.provider); c != 0 {
			return c
		}
		if c := strings.Compare(a.model, b.model); c != 0 {
			return c
		}
		return a.effective.Compare(b.effective)
	})
	return rows
}

// publication is what one publish writes: the catalogue's version, its rows and the check
// window that applies to them.
type publication struct {
	catalog    string
	rows       []priceRow
	windowDays uint16
}

// loadPublication reads the catalogue of dir (the shipped one when dir is "") as the
// enricher builds it (its version counts the overrides files too) and its provider files'
// rows.
func loadPublication(dir string, windowDays uint16) (publication, error) {
	var cat *pricing.Catalog
	var files []pricefile.File
	var err error
	if dir == "" {
		if cat, err = pricing.Default(); err == nil {
			files, err = pricing.DefaultFiles()
		}
	} else {
		var d pricing.Dir
		if d, err = pricing.ReadDir(dir); err == nil {
			if cat, err = d.Catalog(); err == nil {
				files, err = d.Files()
			}
		}
	}
	if err != nil {
		return publication{}, err
	}
	return publication{catalog: cat.Version(), rows: catalogueRows(files), windowDays: windowDays}, nil
}

// hash is the SHA-256 of everything a publish writes but its version and time, hex: two
// publishes of the same catalogue, check dates and window have the same hash.
func (p publication) hash() string {
	h := sha256.New()
	str := func(s string) {
		h.Write(binary.AppendUvarint(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	str(p.catalog)
	str(strconv.Itoa(int(p.windowDays)))
	for _, r := range p.rows {
		str(r.key)
		str(r.checked.Format(time.DateOnly))
		str(strconv.Itoa(len(r.refs)))
		for _, ref := range r.refs {
			str(ref)
		}
		for _, t := range r.rates {
			str(fmt.Sprintf("%s %d %d %d %d", t.tier, t.input, t.cachedInput, t.cacheWrite, t.cacheWrite1h))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// publishResult says what a publish did.
type publishResult struct {
	// Version is the publish_version written, or the one found when Written is false.
	Version uint64
	Written bool
}

// latestPublishes selects, per publish_version, the publishes all of whose rows are present.
const latestPublishes = "SELECT publish_version, any(content_hash) AS content_hash, count() AS n, any(publish_rows) AS want FROM %s.price_rows GROUP BY publish_version HAVING n = want"

// publishPrices writes p to db.price_rows as a new publish, unless the latest complete
// publish holds the same content. The version is now in nanoseconds, moved past the highest
// one stored when the clock is behind it.
func publishPrices(ctx context.Context, conn driver.Conn, db string, p publication, now time.Time) (publishResult, error) {
	var latestHash string
	var latest, highest uint64
	q := "SELECT argMax(content_hash, publish_version), max(publish_version) FROM (" + fmt.Sprintf(latestPublishes, db) + ")"
	if err := conn.QueryRow(ctx, q).Scan(&latestHash, &latest); err != nil {
		return publishResult{}, fmt.Errorf("read the latest publish of %s.price_rows: %w", db, err)
	}
	hash := p.hash()
	if latest > 0 && latestHash == hash {
		return publishResult{Version: latest}, nil
	}
	if err := conn.QueryRow(ctx, "SELECT max(publish_version) FROM "+db+".price_rows").Scan(&highest); err != nil {
		return publishResult{}, fmt.Errorf("read the highest publish_version of %s.price_rows: %w", db, err)
	}
	version := uint64(now.UnixNano())
	if version <= highest {
		version = highest + 1
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".price_rows (publish_version, published_at, publish_rows, content_hash, catalog_version, price_row, provider, model, effective, checked, refs, check_window_days, "+
		"rate_tiers, input_pusd, cached_input_pusd, cache_write_pusd, cache_write_1h_pusd)")
	if err != nil {
		return publishResult{}, fmt.Errorf("insert into %s.price_rows: %w", db, err)
	}
	defer b.Abort()
	for _, r := range p.rows {
		checked := r.checked
		if checked.IsZero() {
			checked = time.Unix(0, 0).UTC() // Date 0000-00-00: never checked
		}
		refs := r.refs
		if refs == nil {
			refs = []string{}
		}
		tiers := make([]string, len(r.rates))
		var input, cached, write, write1h []uint64
		for i, t := range r.rates {
			tiers[i] = t.tier
			input, cached = append(input, uint64(t.input)), append(cached, uint64(t.cachedInput))
			write, write1h = append(write, uint64(t.cacheWrite)), append(write1h, uint64(t.cacheWrite1h))
		}
		if err := b.Append(version, now.UTC().Truncate(time.Second), uint32(len(p.rows)), hash, p.catalog,
			r.key, r.provider, r.model, r.effective, checked, refs, p.windowDays, tiers, input, cached, write, write1h); err != nil {
			return publishResult{}, fmt.Errorf("insert %d rows into %s.price_rows: %w", len(p.rows), db, err)
		}
	}
	if err := b.Send(); err != nil {
		return publishResult{}, fmt.Errorf("insert %d rows into %s.price_rows: %w", len(p.rows), db, err)
	}
	return publishResult{Version: version, Written: true}, nil
}

// checkWindowDefault is TOKENMETER_PRICE_CHECK_WINDOW_DAYS, or 90.
func checkWindowDefault() (uint16, error) {
	s := os.Getenv("TOKENMETER_PRICE_CHECK_WINDOW_DAYS")
	if s == "" {
		return defaultCheckWindowDays, nil
	}
	return parseCheckWindow("TOKENMETER_PRICE_CHECK_WINDOW_DAYS", s)
}

func parseCheckWindow(name, s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s %q: want a number of days from 1 to 65535", name, s)
	}
	return uint16(n), nil
}

// interruptible returns a context cancelled by SIGINT or SIGTERM, for the subcommands that
// talk to ClickHouse (runPricing takes no context of its own).
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// pricingPublish implements "tokenmeter pricing publish": it writes the catalogue's price rows
// with their check dates to ClickHouse, where the view price_staleness weighs them by spend.
func pricingPublish(w io.Writer, clock func() time.Time, args []string) error {
	fs := flag.NewFlagSet("pricing publish", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("pricing", os.Getenv("TOKENMETER_PRICING_DIR"), "directory of pricing files (default: the shipped catalogue)")
	dsn := fs.String("clickhouse", envOr("TOKENMETER_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:9000"), "ClickHouse DSN")
	db := fs.String("database", envOr("TOKENMETER_DATABASE", "tokenmeter"), "ClickHouse database")
	window := fs.String("check-window", "", "days a row stays fresh after its check date (default TOKENMETER_PRICE_CHECK_WINDOW_DAYS or 90)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errors.New(pricingPublishUsage)
	}
	days, err := checkWindowDefault()
	if *window != "" {
		days, err = parseCheckWindow("-check-window", *window)
	}
	if err != nil {
		return err
	}
	p, err := loadPublication(*dir, days)
	if err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	conn, err := openClickHouse(ctx, *dsn, *db, true)
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := publishPrices(ctx, conn, *db, p, clock())
	if err != nil {
		return err
	}
	if !res.Written {
		fmt.Fprintf(w, "unchanged: the %d price rows of catalogue %s (check window %d days) are published already (publish %d)\n",
			len(p.rows), p.catalog, p.windowDays, res.Version)
		return nil
	}
	fmt.Fprintf(w, "published %d price rows of catalogue %s (check window %d days) as publish %d\n",
		len(p.rows), p.catalog, p.windowDays, res.Version)
	return nil
}

// publishPricesAtStart publishes the catalogue of dir (the shipped one when "") to db, as
// "tokenmeter run" does when it starts. The aggregator applies the migrations as it starts,
// so until price_rows exists a publish fails: it is tried again every retry, up to tries
// times. A failure is logged, not fatal: the pipeline meters without it.
func publishPricesAtStart(ctx context.Context, log *slog.Logger, dsn, db, dir string, retry time.Duration, tries int) {
	days, err := checkWindowDefault()
	var p publication
	if err == nil {
		p, err = loadPublication(dir, days)
	}
	if err != nil {
		log.Warn("price rows not published (price_staleness shows the last publish)", "err", err)
		return
	}
	conn, err := openClickHouse(ctx, dsn, db, false)
	if err != nil {
		log.Warn("price rows not published (price_staleness shows the last publish)", "err", err)
		return
	}
	defer conn.Close()
	for try := 1; ; try++ {
		res, err := publishPrices(ctx, conn, db, p, time.Now())
		if err == nil {
			log.Info("price rows published", "rows", len(p.rows), "catalogue", p.catalog, "written", res.Written, "publish", res.Version)
			return
		}
		if try == tries || ctx.Err() != nil {
			log.Warn("price rows not published (price_staleness shows the last publish; run tokenmeter pricing publish)", "tries", try, "err", err)
			return
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}
