// Command tokenmeter runs the whole pipeline in one process (embedded NATS JetStream, collector,
// enricher, aggregator) and carries the operator subcommands.
//
//	tokenmeter run       run the pipeline (the default)
//	tokenmeter summary   print spend by team and model from ClickHouse
//	tokenmeter send      send synthetic test events to a collector
//	tokenmeter pricing validate FILE...
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: tokenmeter <command> [flags]

commands:
  run                        run the whole pipeline in one process (default)
  summary                    print spend by team and by model from ClickHouse
  send                       send synthetic test events to a collector
  pricing validate FILE...   check pricing files and print what they hold

Run "tokenmeter <command> -h" for the flags of a command.
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runPipeline(ctx, args)
	case "summary":
		err = runSummary(ctx, args)
	case "send":
		err = runSend(ctx, args)
	case "pricing":
		err = runPricing(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "tokenmeter: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tokenmeter %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
