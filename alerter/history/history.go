// Package history writes every alert transition to ClickHouse's alert_history table
// (migration 0010). Rows are buffered and written in one INSERT per flush; a failed write
// keeps them for the next flush, up to a bound past which the oldest are dropped and
// counted.
package history

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// MaxBuffered bounds the rows kept while ClickHouse is unreachable.
const MaxBuffered = 100_000

// Row is one transition.
type Row struct {
	At                     time.Time
	Fingerprint, Rule      string
	Labels                 map[string]string
	From, To               string
	Measure                string
	Money                  bool // Value, Level and Baseline are picodollars
	Value, Level, Baseline int64
	Summary                string
}

// Writer buffers rows and writes them to database db.
type Writer struct {
	conn    driver.Conn
	db      string
	buf     []Row
	Dropped int64
}

// New returns a writer into db.alert_history.
func New(conn driver.Conn, db string) *Writer { return &Writer{conn: conn, db: db} }

// Add buffers rows.
func (w *Writer) Add(rows ...Row) {
	w.buf = append(w.buf, rows...)
	if over := len(w.buf) - MaxBuffered; over > 0 {
		w.buf = w.buf[over:]
		w.Dropped += int64(over)
	}
}

// Buffered is the number of rows not yet written.
func (w *Writer) Buffered() int { return len(w.buf) }

// Flush writes the buffered rows.
func (w *Writer) Flush(ctx context.Context) error {
	if len(w.buf) == 0 {
		return nil
	}
	b, err := w.conn.PrepareBatch(ctx, "INSERT INTO "+w.db+".alert_history (at, fingerprint, rule, labels, from_state, to_state, measure, value, level, baseline, summary)")
	if err != nil {
		return fmt.Errorf("prepare insert of %d alert transitions: %w", len(w.buf), err)
	}
	for _, r := range w.buf {
		labels := []byte("{}")
		if len(r.Labels) > 0 {
			labels, _ = json.Marshal(r.Labels)
		}
		if err := b.Append(r.At.UTC(), r.Fingerprint, r.Rule, string(labels), r.From, r.To, r.Measure,
			amount(r.Value, r.Money), amount(r.Level, r.Money), amount(r.Baseline, r.Money), r.Summary); err != nil {
			_ = b.Abort()
			return fmt.Errorf("append alert transition %s to the insert: %w", r.Fingerprint, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d alert transitions into %s.alert_history: %w", len(w.buf), w.db, err)
	}
	w.buf = w.buf[:0]
	return nil
}

func amount(v int64, money bool) decimal.Decimal {
	if money {
		return decimal.New(v, -12)
	}
	return decimal.NewFromInt(v)
}
