package stream

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestIsFull(t *testing.T) {
	f := func(err error, want bool) {
		t.Helper()
		if got := IsFull(err); got != want {
			t.Errorf("IsFull(%v) = %v, want %v", err, got, want)
		}
	}
	api := func(code jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("publish: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: desc})
	}
	f(api(10077, "maximum bytes exceeded"), true)
	f(api(10077, "maximum messages exceeded"), true)
	f(api(10077, "maximum messages per subject exceeded"), true)
	f(api(10047, "insufficient storage resources available"), true)
	f(api(10077, "disk I/O error"), false)
	f(api(10054, "message size exceeds maximum allowed"), false)
	f(fmt.Errorf("publish: %w", jetstream.ErrAsyncPublishTimeout), false)
	f(fmt.Errorf("publish: %w", nats.ErrDisconnected), false)
	f(errors.New("nats: maximum bytes exceeded"), true)
}
