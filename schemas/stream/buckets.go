package stream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketReplicas is how many replicas the stages' KV bucket named bucket (the partition
// leases, the alert state, the budget states) is to have: as many as USAGE_RAW has — what
// -stream-replicas gave the streams, which every stage ensures before it opens a bucket — or
// the bucket's own when it has more, so that an operator's choice is kept. It is 1 when
// neither exists yet.
func BucketReplicas(ctx context.Context, js jetstream.JetStream, bucket string) (int, error) {
	n := 1
	for _, name := range []string{Raw, "KV_" + bucket} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("look up stream %s: %w", name, err)
		}
		n = max(n, s.CachedInfo().Config.Replicas)
	}
	return n, nil
}
