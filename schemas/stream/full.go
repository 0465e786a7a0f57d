package stream

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStream error codes that mean the stream or the account cannot take more right now
// (nats-server's errors.json).
const (
	codeStoreFailed        = 10077 // JSStreamStoreFailedF, e.g. "maximum bytes exceeded"
	codeAccountResources   = 10002 // JSAccountResourcesExceededErr
	codeMemoryResources    = 10028 // JSMemoryResourcesExceededErr
	codeStorageResources   = 10047 // JSStorageResourcesExceededErr
	descMaximumMsgsOrBytes = "maximum "
)

// IsFull reports whether err means that JetStream refused a message because a stream (with
// DiscardNew) or the account is full: the caller should slow down and retry, nothing is
// broken.
func IsFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case codeAccountResources, codeMemoryResources, codeStorageResources:
			return true
		case codeStoreFailed:
			return strings.HasPrefix(apiErr.Description, descMaximumMsgsOrBytes)
		}
	}
	// Older servers answer without an error code; their text is the store's own error.
	s := err.Error()
	return strings.Contains(s, "maximum messages") || strings.Contains(s, "maximum bytes")
}
