package standalone

import (
	"os"
	"runtime/debug"
)

// DefaultMemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT) `tokenmeter run` sets
// unless told otherwise (-memory-limit, or GOMEMLIMIT in the environment). The live heap of
// the single process at full speed is ~600 MB — nats-server's 8 MiB block buffers (~350 MB),
// the aggregator's batches (BatchRows) and the NATS clients' pending messages — and GOGC's
// default lets the heap grow to twice that before a collection; the limit makes the
// collector run earlier instead, keeping the process under 1 GiB. It is soft: a live heap
// above it (a -dedup-window of many hours at a high rate, say) is not refused, it only makes
// the collector run more often; raise it then.
const DefaultMemoryLimit = 900 << 20

// ApplyMemoryLimit sets the Go runtime's soft memory limit to limit bytes, unless the
// GOMEMLIMIT environment variable set one (which wins) or limit is 0. It returns the limit in
// force.
func ApplyMemoryLimit(limit int64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" || limit <= 0 {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(limit)
	return limit
}
