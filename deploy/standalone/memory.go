package standalone

import (
	"os"
	"runtime/debug"
)

// DefaultMemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT) `tokenmeter run` sets
// unless the environment sets one: the collector's, enricher's and aggregator's in-flight work
// is bounded, so the live heap stays well below it, and the limit makes the garbage collector
// run before the heap doubles past it (GOGC alone lets a 400 MiB live heap reach 800 MiB).
const DefaultMemoryLimit = 0

// ApplyMemoryLimit sets the Go runtime's soft memory limit to limit bytes, unless the
// GOMEMLIMIT environment variable set one (which wins) or limit is 0. It returns the limit in
// force.
func ApplyMemoryLimit(limit int64) int64 {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || limit <= 0 {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(limit)
	return limit
}
