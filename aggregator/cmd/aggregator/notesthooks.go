//go:build !testhooks

package main

import (
	"log/slog"

	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
)

// testHooks does nothing in a production binary; see testhooks.go.
func testHooks(*aggregate.Config, *slog.Logger) error { return nil }
