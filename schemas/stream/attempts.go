package stream

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Attempts bounds how often Ensure starts over after a request timed out.
const Attempts = 6

// ensureAttempts calls fn until it succeeds, fails otherwise than by a JetStream request
// timing out, ctx ends, or Attempts calls have been made, waiting up to a second (at random,
// so that stages that collided do not collide again) between calls. Several stages starting
// together on a 3-node cluster each create the same R3 streams at once; nats-server v2.15
// then leaves every one of those requests, and the stream look-ups made meanwhile, without an
// answer until their 5 s timeout, while a second round finds the streams made
// (bench/cluster TestConcurrentEnsure; a known server behaviour, nats-io/nats.go#949 and
// nats-io/nats-server#3677, for which retrying is the usual answer).
func ensureAttempts(ctx context.Context, fn func() error) error {
	var err error
	for range Attempts {
		if err = fn(); err == nil || !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(rand.Int64N(int64(time.Second)))):
		}
	}
	return err
}
