package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/schemas/kv"
)

// maxEntryBytes bounds one bucket value; a larger one is reported as invalid, not decoded.
const maxEntryBytes = 64 << 10

// Amount is a USD amount or a measure's value as exact decimal text ("12.500000000000"),
// never a float.
type Amount string

// decimalText matches what the alerter writes for an amount: an integer or a decimal fraction.
var decimalText = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// amount checks that s, read from a bucket, is decimal text; empty is allowed.
func amount(s string) (Amount, error) {
	if s != "" && !decimalText.MatchString(s) {
		return "", fmt.Errorf("amount %q is not a decimal number", s)
	}
	return Amount(s), nil
}

// Alert is an alert as the API shows it: its fingerprint (the key) and the alerter's record,
// whose value DecodeAlert has checked to be decimal text.
type Alert struct {
	Fingerprint string `json:"fingerprint"`
	kv.Alert
}

// Budget is a budget as the API shows it.
type Budget struct {
	Name        string    `json:"name"`
	Scope       string    `json:"scope"` // "team=search"
	PeriodStart time.Time `json:"period_start"`
	LimitUSD    Amount    `json:"limit_usd"`
	SpentUSD    Amount    `json:"spent_usd"`
	ForecastUSD Amount    `json:"forecast_usd"`
	State       string    `json:"state"`
}

// Invalid is a bucket entry that could not be read.
type Invalid struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// DecodeAlert decodes the value of a kv.Alerts entry.
func DecodeAlert(key string, value []byte) (Alert, error) {
	var r kv.Alert
	if err := decodeEntry(value, &r); err != nil {
		return Alert{}, fmt.Errorf("alert %q: %w", key, err)
	}
	if r.Rule == "" || r.State == "" {
		return Alert{}, fmt.Errorf("alert %q: rule and state are required", key)
	}
	if _, err := amount(r.Value); err != nil {
		return Alert{}, fmt.Errorf("alert %q: %w", key, err)
	}
	return Alert{Fingerprint: key, Alert: r}, nil
}

// DecodeBudget decodes the value of a kv.Budgets entry.
func DecodeBudget(key string, value []byte) (Budget, error) {
	var r kv.Budget
	if err := decodeEntry(value, &r); err != nil {
		return Budget{}, fmt.Errorf("budget %q: %w", key, err)
	}
	b := Budget{Name: r.Name, Scope: r.Scope, PeriodStart: r.PeriodStart, State: r.State}
	if b.Name == "" {
		b.Name = key
	}
	var errs []error
	for _, a := range []struct {
		to   *Amount
		from string
	}{{&b.LimitUSD, r.LimitUSD}, {&b.SpentUSD, r.SpentUSD}, {&b.ForecastUSD, r.ForecastUSD}} {
		var err error
		*a.to, err = amount(a.from)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Budget{}, fmt.Errorf("budget %q: %w", key, err)
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
	err := readBucket(ctx, js, kv.Alerts, func(key string, value []byte) {
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
	err := readBucket(ctx, js, kv.Budgets, func(key string, value []byte) {
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
