//go:build testhooks

package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
)

// testHooks installs the fault-injection hook of a binary built with -tags testhooks
// (bench/chaos builds them so): TOKENMETER_TEST_EXIT_AFTER_INSERT=N makes the process exit
// (status 3) right after its Nth INSERT that wrote rows, before acking the batch — the window
// the fault-injection tests must hit.
func testHooks(cfg *aggregate.Config, log *slog.Logger) error {
	v := os.Getenv("TOKENMETER_TEST_EXIT_AFTER_INSERT")
	if v == "" {
		return nil
	}
	exitAfter, err := strconv.Atoi(v)
	if err != nil || exitAfter < 1 {
		return fmt.Errorf("TOKENMETER_TEST_EXIT_AFTER_INSERT=%q: not a positive integer", v)
	}
	var inserts atomic.Int64
	cfg.BeforeAck = func(partition, rows int) error {
		if rows > 0 && inserts.Add(1) >= int64(exitAfter) {
			log.Warn("TOKENMETER_TEST_EXIT_AFTER_INSERT: exiting after an insert, before its ack", "partition", partition, "inserts", exitAfter)
			os.Exit(3)
		}
		return nil
	}
	return nil
}
