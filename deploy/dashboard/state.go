package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The alerter publishes its state in two JetStream key-value buckets; the dashboard only reads
// them, through this contract.
const (
	// AlertsBucket holds one entry per alert, keyed by the alert's fingerprint.
	AlertsBucket = "tokenmeter_alerts"
	// BudgetsBucket holds one entry per budget, keyed by the budget's name.
	BudgetsBucket = "tokenmeter_budgets"
)

// maxEntryBytes bounds one bucket value; a larger one is reported as invalid, not decoded.
const maxEntryBytes = 64 << 10

// Amount is a number as the alerter wrote it, a JSON number or a JSON string holding one,
// kept as its exact decimal text (never a float).
type Amount string

// UnmarshalJSON accepts 12.5, "12.5" and null (which leaves the amount empty).
func (a *Amount) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*a = ""
		return nil
	}
	text := b
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		text = []byte(s)
	}
	if !json.Valid(text) {
		return fmt.Errorf("amount %q is not a number", text)
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("amount %q: %w", text, err)
	}
	n, ok := v.(json.Number)
	if !ok {
		return fmt.Errorf("amount %q is not a number", text)
	}
	*a = Amount(n)
	return nil
}

// Alert is one entry of AlertsBucket.
type Alert struct {
	Fingerprint string            `json:"fingerprint"`
	Rule        string            `json:"rule"`
	Labels      map[string]string `json:"labels"`
	// State is the alerter's state of the alert: "pending" and "firing" are active.
	State   string    `json:"state"`
	Since   time.Time `json:"since"`
	Value   Amount    `json:"value"`
	Summary string    `json:"summary"`
	Updated time.Time `json:"updated"`
}

// Budget is one entry of BudgetsBucket.
type Budget struct {
	Name string `json:"name"`
	// Scope is what the budget covers, as the alerter wrote it (a string or an object).
	Scope       json.RawMessage `json:"scope"`
	PeriodStart string          `json:"period_start"`
	LimitUSD    Amount          `json:"limit_usd"`
	SpentUSD    Amount          `json:"spent_usd"`
	ForecastUSD Amount          `json:"forecast_usd"`
	State       string          `json:"state"`
}

// Invalid is a bucket entry that could not be read.
type Invalid struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// DecodeAlert decodes the value of an AlertsBucket entry.
func DecodeAlert(key string, value []byte) (Alert, error) {
	var a Alert
	if err := decodeEntry(value, &a); err != nil {
		return Alert{}, fmt.Errorf("alert %q: %w", key, err)
	}
	if a.Rule == "" || a.State == "" {
		return Alert{}, fmt.Errorf("alert %q: rule and state are required", key)
	}
	a.Fingerprint = key
	return a, nil
}

// DecodeBudget decodes the value of a BudgetsBucket entry.
func DecodeBudget(key string, value []byte) (Budget, error) {
	var b Budget
	if err := decodeEntry(value, &b); err != nil {
		return Budget{}, fmt.Errorf("budget %q: %w", key, err)
	}
	if b.Name == "" {
		b.Name = key
	}
	if len(b.Scope) == 0 {
		b.Scope = json.RawMessage("null")
	}
	return b, nil
}

func decodeEntry(value []byte, v any) error {
	if len(value) > maxEntryBytes {
		return fmt.Errorf("value of %d bytes exceeds %d", len(value), maxEntryBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return errors.New("decode: trailing data after the JSON object")
	}
	return nil
}

// active reports whether an alert of this state is shown as active.
func active(state string) bool { return state == "firing" || state == "pending" }

// readBucket calls fn with every current entry of a bucket; a missing bucket (or no JetStream)
// has no entries.
func readBucket(ctx context.Context, js jetstream.JetStream, bucket string, fn func(key string, value []byte)) error {
	if js == nil {
		return nil
	}
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open key-value bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch key-value bucket %s: %w", bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read key-value bucket %s: %w", bucket, ctx.Err())
		case e, ok := <-w.Updates():
			// A nil entry marks the end of the current values.
			if !ok || e == nil {
				return nil
			}
			fn(e.Key(), e.Value())
		}
	}
}

// Alerts reads the active alerts (firing first, then pending, oldest first) and the entries
// that could not be decoded.
func Alerts(ctx context.Context, js jetstream.JetStream) ([]Alert, []Invalid, error) {
	alerts, invalid := []Alert{}, []Invalid{}
	err := readBucket(ctx, js, AlertsBucket, func(key string, value []byte) {
		a, err := DecodeAlert(key, value)
		if err != nil {
			invalid = append(invalid, Invalid{Key: key, Error: err.Error()})
			return
		}
		if active(a.State) {
			alerts = append(alerts, a)
		}
	})
	sort.Slice(alerts, func(i, j int) bool {
		a, b := alerts[i], alerts[j]
		if a.State != b.State {
			return a.State == "firing"
		}
		if !a.Since.Equal(b.Since) {
			return a.Since.Before(b.Since)
		}
		return a.Fingerprint < b.Fingerprint
	})
	sortInvalid(invalid)
	return alerts, invalid, err
}

// Budgets reads every budget, by name, and the entries that could not be decoded.
func Budgets(ctx context.Context, js jetstream.JetStream) ([]Budget, []Invalid, error) {
	budgets, invalid := []Budget{}, []Invalid{}
	err := readBucket(ctx, js, BudgetsBucket, func(key string, value []byte) {
		b, err := DecodeBudget(key, value)
		if err != nil {
			invalid = append(invalid, Invalid{Key: key, Error: err.Error()})
			return
		}
		budgets = append(budgets, b)
	})
	sort.Slice(budgets, func(i, j int) bool { return budgets[i].Name < budgets[j].Name })
	sortInvalid(invalid)
	return budgets, invalid, err
}

func sortInvalid(invalid []Invalid) {
	sort.Slice(invalid, func(i, j int) bool { return invalid[i].Key < invalid[j].Key })
}
