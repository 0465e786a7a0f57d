package chwrite

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/tokenmeter/tokenmeter/schemas/batch"
)

// Inserter writes rows to <db>.usage_events over ClickHouse's HTTP interface as RowBinary.
//
// It exists for speed: the native driver converts every value through reflection and every
// Decimal through math/big, and grows fresh column buffers for each INSERT, which made the
// write path a seventh of the pipeline's CPU. RowBinary is a plain byte layout that one
// reused buffer holds; ClickHouse 18.16 and current releases parse it at the same cost as
// the native format.
//
// An Inserter is not safe for concurrent use (the buffer is reused); a Group serialises it.
type Inserter struct {
	client *http.Client
	url    string // with the INSERT query
	db     string
	user   string
	pass   string
	buf    []byte
	// ids makes the query id of each INSERT (see QueryID).
	ids queryIDs
}

// NewInserter returns an inserter to database db (a valid identifier) at the ClickHouse HTTP
// URL base, e.g. http://default:secret@127.0.0.1:8123.
func NewInserter(base, db string) (*Inserter, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ClickHouse HTTP URL %q: want http(s)://[user[:password]@]host:port", base)
	}
	in := &Inserter{client: &http.Client{}, db: db, ids: newQueryIDs()}
	if u.User != nil {
		in.user = u.User.Username()
		in.pass, _ = u.User.Password()
		u.User = nil
	}
	q := u.Query()
	q.Set("query", "INSERT INTO "+db+".usage_events ("+columns+") FORMAT RowBinary")
	u.RawQuery = q.Encode()
	in.url = u.String()
	return in, nil
}

// HTTPURL derives ClickHouse's HTTP URL from a native-protocol DSN on the standard ports:
// 9000 becomes http on 8123, 9440 (TLS) https on 8443, with the same user and password.
// Other ports cannot be guessed; configure the HTTP URL for them.
func HTTPURL(dsn string) (string, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("parse ClickHouse DSN: %w", err)
	}
	if opts.Protocol == clickhouse.HTTP {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse ClickHouse DSN: %w", err)
		}
		u.Path, u.RawQuery = "", ""
		return u.String(), nil
	}
	if len(opts.Addr) == 0 {
		return "", fmt.Errorf("ClickHouse DSN %q names no address", redact(dsn))
	}
	host, port, err := net.SplitHostPort(opts.Addr[0])
	if err != nil {
		return "", fmt.Errorf("ClickHouse address %q: %w", opts.Addr[0], err)
	}
	u := url.URL{Scheme: "http"}
	switch {
	case port == "9000" && opts.TLS == nil:
		u.Host = net.JoinHostPort(host, "8123")
	case port == "9440" || (port == "9000" && opts.TLS != nil):
		u.Scheme, u.Host = "https", net.JoinHostPort(host, "8443")
	default:
		return "", fmt.Errorf("cannot tell ClickHouse's HTTP port from native port %s; set the HTTP URL", port)
	}
	if opts.Auth.Username != "" {
		u.User = url.UserPassword(opts.Auth.Username, opts.Auth.Password)
	}
	return u.String(), nil
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		u.User = url.User(u.User.Username())
		return u.String()
	}
	return dsn
}

// Insert writes rows, of stream partition partition, as one INSERT. The materialized views
// fill the roll-ups from the same INSERT. As with any INSERT, an error does not mean that
// nothing was written (rows of two months make two parts); find out with Writer.Existing.
func (in *Inserter) Insert(ctx context.Context, partition int, rows []batch.Row) error {
	return in.insertParts(ctx, []part{{partition, rows}})
}

func (in *Inserter) insertParts(ctx context.Context, parts []part) error {
	n := 0
	for _, p := range parts {
		n += len(p.rows)
	}
	if n == 0 {
		return nil
	}
	// Sized once: grown while filled, a fresh buffer of an INSERT's ~15 MB was copied and
	// touched (page faults) several times over.
	size := 0
	for _, p := range parts {
		size += rowsSize(p.rows)
	}
	in.buf = slices.Grow(in.buf[:0], size)
	for _, p := range parts {
		in.buf = appendRows(in.buf, p.partition, p.rows)
	}
	// The query id names the partitions of the INSERT, so that an aggregator can tell a
	// running INSERT into its own partitions from one of another aggregator's (Partitions).
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url+"&query_id="+url.QueryEscape(in.ids.next(parts)), bytes.NewReader(in.buf))
	if err != nil {
		return fmt.Errorf("insert %d rows into %s.usage_events: %w", n, in.db, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if in.user != "" {
		req.SetBasicAuth(in.user, in.pass)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		return fmt.Errorf("insert %d rows into %s.usage_events: %w", n, in.db, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, resp.Body) // so that the connection is reused
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("insert %d rows into %s.usage_events: ClickHouse answered %s: %s", n, in.db, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// appendRows appends rows in RowBinary, column by column in the order of columns: integers
// little-endian, DateTime as UInt32 seconds, String and Array as a LEB128 length and then the
// bytes (elements), Decimal(38, 12) as the 128-bit two's complement of picodollars.
func appendRows(b []byte, partition int, rows []batch.Row) []byte {
	le := binary.LittleEndian
	for i := range rows {
		r := &rows[i]
		ms := r.Time.UnixMilli()
		sec := floorDiv(ms, 1000)
		b = appendString(b, r.ID)
		b = le.AppendUint32(b, uint32(sec))
		b = le.AppendUint16(b, uint16(ms-sec*1000))
		b = le.AppendUint32(b, uint32(r.Received.Unix()))
		b = le.AppendUint16(b, uint16(partition))
		for _, s := range [...]string{r.Provider, r.Model, r.ModelPriced, r.Operation, r.Team, r.Feature, r.Env, r.CostCenter, r.Traffic} {
			b = appendString(b, s)
		}
		b = binary.AppendUvarint(b, uint64(len(r.ExtraTags)))
		for _, t := range r.ExtraTags {
			b = appendString(b, t.Key)
		}
		b = binary.AppendUvarint(b, uint64(len(r.ExtraTags)))
		for _, t := range r.ExtraTags {
			b = appendString(b, t.Value)
		}
		b = appendString(b, r.WorkflowID)
		b = appendString(b, r.PromptVersion)
		b = appendString(b, r.ResponseID)
		t := &r.Tokens
		for _, v := range [...]int64{t.Input, t.Output, t.CachedInput, t.CacheWrite, t.CacheWrite1h, t.Reasoning} {
			b = le.AppendUint64(b, unsigned(v))
		}
		b = appendDecimal128(b, r.CostPico)
		b = appendDecimal128(b, r.SavingsPico)
		b = append(b, flag(r.Priced))
		b = appendString(b, r.PriceVersion)
		b = appendString(b, r.ServiceTier)
		b = appendString(b, r.Status)
		b = le.AppendUint32(b, uint32(min(max(r.LatencyMS, 0), math.MaxUint32)))
		b = append(b, flag(r.CacheHit))
		b = appendString(b, r.Source)
		b = binary.AppendUvarint(b, uint64(len(r.Units)))
		for _, u := range r.Units {
			b = appendString(b, u.Key)
		}
		b = binary.AppendUvarint(b, uint64(len(r.Units)))
		for _, u := range r.Units {
			b = le.AppendUint64(b, unsigned(u.Count))
		}
		b = binary.AppendUvarint(b, uint64(len(r.Units)))
		for _, u := range r.Units {
			b = appendDecimal128(b, u.CostPico)
		}
		b = append(b, flag(r.Estimated))
		b = appendString(b, r.EstimateReason)
	}
	return b
}

// rowsSize is the size of rows in RowBinary, as appendRows writes them: per row the fixed
// columns (times, partition, tokens, decimals, flags, latency) and the strings and arrays
// with their lengths.
func rowsSize(rows []batch.Row) int {
	const fixed = 4 + 2 + 4 + 2 + 6*8 + 2*16 + 1 + 4 + 1 + 1
	n := fixed * len(rows)
	str := func(s string) int { return uvarintLen(len(s)) + len(s) }
	for i := range rows {
		r := &rows[i]
		for _, s := range [...]string{r.ID, r.Provider, r.Model, r.ModelPriced, r.Operation, r.Team, r.Feature, r.Env,
			r.CostCenter, r.Traffic, r.WorkflowID, r.PromptVersion, r.ResponseID, r.PriceVersion, r.ServiceTier,
			r.Status, r.Source, r.EstimateReason} {
			n += str(s)
		}
		n += 2 * uvarintLen(len(r.ExtraTags))
		for _, t := range r.ExtraTags {
			n += str(t.Key) + str(t.Value)
		}
		n += 3*uvarintLen(len(r.Units)) + (8+16)*len(r.Units)
		for _, u := range r.Units {
			n += str(u.Key)
		}
	}
	return n
}

// uvarintLen is the length of n as binary.AppendUvarint writes it.
func uvarintLen(n int) int { return (bits.Len64(uint64(n)|1) + 6) / 7 }

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendDecimal128 appends v (units of the column's scale) as a little-endian 128-bit
// two's complement integer: the low word, then the sign extension.
func appendDecimal128(b []byte, v int64) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(v))
	return binary.LittleEndian.AppendUint64(b, uint64(v>>63))
}

// NewInserterForDSN is NewInserter at the HTTP URL derived from a native DSN (HTTPURL).
func NewInserterForDSN(dsn, db string) (*Inserter, error) {
	u, err := HTTPURL(dsn)
	if err != nil {
		return nil, err
	}
	return NewInserter(u, db)
}
