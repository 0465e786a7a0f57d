package standalone

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestApplyMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	if got := ApplyMemoryLimit(0); got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("ApplyMemoryLimit(0) = %d, limit %d; want none", got, debug.SetMemoryLimit(-1))
	}
	if got := ApplyMemoryLimit(DefaultMemoryLimit); got != 900<<20 || debug.SetMemoryLimit(-1) != 900<<20 {
		t.Errorf("ApplyMemoryLimit(default) = %d, limit %d; want %d", got, debug.SetMemoryLimit(-1), 900<<20)
	}
	// GOMEMLIMIT in the environment wins (the runtime read it at start-up).
	t.Setenv("GOMEMLIMIT", "2GiB")
	if got := ApplyMemoryLimit(123 << 20); got != 900<<20 || debug.SetMemoryLimit(-1) != 900<<20 {
		t.Errorf("ApplyMemoryLimit with GOMEMLIMIT set = %d, limit %d; want the limit in force, %d", got, debug.SetMemoryLimit(-1), 900<<20)
	}
}

// The aggregator's partitions share BatchRows rows per INSERT, so its memory does not grow
// with the partition count.
func TestConfigBatchRows(t *testing.T) {
	for _, c := range []struct{ partitions, rows, want int }{
		{4, 0, 16_000},
		{1, 0, 64_000},
		{3, 0, 21_333},
		{128, 0, MinBatchRows},
		{4, 7, 7},
	} {
		got := Config{Partitions: c.partitions, BatchMaxRows: c.rows}.withDefaults()
		if got.BatchMaxRows != c.want || got.Streams.Partitions != c.partitions {
			t.Errorf("%d partitions, BatchMaxRows %d: got %d rows, %d stream partitions; want %d, %d",
				c.partitions, c.rows, got.BatchMaxRows, got.Streams.Partitions, c.want, c.partitions)
		}
	}
}
