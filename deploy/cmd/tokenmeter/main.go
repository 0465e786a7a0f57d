// Command tokenmeter runs the whole pipeline in one process (embedded NATS JetStream, collector,
// enricher, aggregator) and carries the operator subcommands.
//
//	tokenmeter run       run the pipeline (the default)
//	tokenmeter summary   print spend by team and model from ClickHouse
//	tokenmeter spend     today / month to date by team and model, top movers, unpriced models
//	tokenmeter export    monthly showback / chargeback per team as CSV or Parquet
//	tokenmeter dashboard the dashboard page and its JSON API on their own
//	tokenmeter send      send synthetic test events to a collector
//	tokenmeter proxy     OpenAI/Anthropic-compatible proxy that meters every call
//	tokenmeter pricing validate FILE... | lookup PROVIDER MODEL | import litellm FILE
//	tokenmeter rerate -from T -to T [-apply]
//	tokenmeter rules validate FILE...
//	tokenmeter reconcile [-nats URL] [-clickhouse DSN] [-database NAME] [-partitions N]
//	tokenmeter nats init | add-emitter NAME
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
  spend                      today / month to date by team and model, top movers, unpriced models
  export -month YYYY-MM      monthly showback / chargeback per team (-format csv|parquet)
  dashboard                  serve the dashboard page and its JSON API on their own
  send                       send synthetic test events to a collector
  proxy                      OpenAI/Anthropic-compatible proxy that meters every call
  pricing validate FILE...   check pricing (and *.overrides.yaml) files and print what they hold
  pricing lookup PROV MODEL  what the catalogue prices a model as, and a call's cost (-at, -tier, -input …)
  pricing import litellm F   convert LiteLLM's model_prices_and_context_window.json to pricing files
  pricing list               one line per model: aliases, prices per class and tier, when checked (-provider)
  pricing diff litellm|genai-prices F  every field whose price differs from a reference's
  pricing publish            write the catalogue's price rows and check dates to ClickHouse (price_staleness)
  pricing stale              price rows past their check window, by spend; exit 1 above -max-share
  rerate -from T -to T       re-price stored events with the current catalogue; -apply writes corrections
  rules validate FILE...     check alerter rules files and print what they hold
  reconcile                  compare what USAGE_RAW accepted with usage_events: ids missing or stored twice
  nats init                  create every role's NATS nkey seed and the nats-server users for them (-dir)
  nats add-emitter NAME      a service's own NATS identity: it may only publish usage
  bills sync|import|diff     import providers' usage and cost reports; metered beside billed (diff -month YYYY-MM)
  silence add|list|expire    mute alerts matching labels for a while (the alerter's API, kept across restarts)

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
	case "spend":
		err = runSpend(ctx, args, os.Stdout)
	case "export":
		err = runExport(ctx, args, os.Stderr)
	case "dashboard":
		err = runDashboard(ctx, args)
	case "proxy":
		err = runProxy(ctx, args)
	case "send":
		err = runSend(ctx, args)
	case "rerate":
		err = runRerate(ctx, args)
	case "pricing":
		err = runPricing(args)
	case "rules":
		err = runRules(args)
	case "reconcile":
		err = runReconcile(ctx, args, os.Stdout, os.Stderr)
	case "nats":
		err = runNATS(args, os.Stdout)
	case "bills":
		err = runBills(ctx, args)
	case "silence":
		err = runSilence(ctx, args, os.Stdout)
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
