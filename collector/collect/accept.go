package collect

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// PublishError is returned by Accept when JetStream did not store the events: none of them
// is accepted, and the caller should answer its client with HTTPStatus (429 when the stream
// is full, 503 when NATS is unreachable) and a Retry-After of RetryAfterSeconds, so that the
// client sends them again. Resending loses nothing and doubles nothing (event ids
// de-duplicate).
type PublishError struct {
	Status     int
	RetryAfter string
	Err        error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("none of the events is accepted, send them again later: %v", e.Err)
}

func (e *PublishError) Unwrap() error { return e.Err }

// HTTPStatus is the status to answer the client with.
func (e *PublishError) HTTPStatus() int { return e.Status }

// RetryAfterSeconds is the Retry-After header to answer the client with.
func (e *PublishError) RetryAfterSeconds() string { return e.RetryAfter }

// Accept takes events that another intake decoded (OTLP traces, …) down the same path as
// POST /v1/events: each is normalized (received now) and validated on its own, the budget
// hard caps refuse or flag it (Config.Budgets), the valid ones
// are published to USAGE_RAW, and Accept returns once JetStream stored them. It returns the
// rejections (Index is the position in events) and, when publishing failed, a *PublishError.
// events is not modified.
//
// ctx carries the API key of the request the events came with, when the collector has a keys
// file (its bound tags and the tag policy are applied as for POST /v1/events). It is not used
// to bound publishing, for the reason ingest gives: a client hanging up must
// not count as a NATS failure, and the wait is bounded by Config.PublishTimeout.
func (c *Collector) Accept(ctx context.Context, events []event.Usage) ([]event.Rejection, error) {
	received := c.now()
	valid := make([]event.Usage, 0, len(events))
	var rejected []event.Rejection
	ra := c.attr.request(ctx)
	for i := range events {
		u := events[i]
		u.Normalize(received)
		err := u.Validate(received, c.cfg.Limits)
		if err == nil && !ra.none() {
			err = c.attr.apply(ra, &u) // replaces u.Tags, never modifies the caller's map
		}
		if err != nil {
			rejected = append(rejected, event.Rejection{Index: i, ID: u.ID, Error: err.Error()})
			c.metrics.rejected.WithLabelValues(reasonClass(err.Error())).Inc()
			continue
		}
		// Budget hard caps, as POST /v1/events applies them.
		tags, refusal := c.cfg.Budgets.Decide(u.Tags, u.WorkflowID)
		if refusal != "" {
			rejected = append(rejected, event.Rejection{Index: i, ID: u.ID, Error: "budget: " + refusal})
			c.metrics.refused.WithLabelValues("budget").Inc()
			continue
		}
		u.Tags = tags
		valid = append(valid, u)
	}
	if len(valid) == 0 {
		return rejected, nil
	}
	encodeErr, err := c.publishEvents(valid, ra.source(), received)
	if encodeErr != nil {
		return rejected, fmt.Errorf("encode %d events: %w", len(valid), encodeErr)
	}
	if err != nil {
		perr := &PublishError{Status: http.StatusServiceUnavailable, RetryAfter: retryAfterUnavailable, Err: err}
		reason := "unavailable"
		if errors.Is(err, errFull) {
			perr.Status, perr.RetryAfter, reason = http.StatusTooManyRequests, retryAfterFull, "full"
		}
		c.metrics.refused.WithLabelValues(reason).Add(float64(len(valid)))
		c.cfg.Logger.Warn("refused usage events", "status", perr.Status, "events", len(valid), "err", err)
		return rejected, perr
	}
	c.metrics.accepted.Add(float64(len(valid)))
	return rejected, nil
}
