// Command alerter evaluates spend rules and budgets over the enriched events and notifies
// on-call. Every flag may also be set through an environment variable (TOKENMETER_NATS_URL,
// TOKENMETER_RULES_FILE, TOKENMETER_<FLAG> ...); a flag on the command line wins.
package main

import (
	"os"

	"github.com/tokenmeter/tokenmeter/alerter/alerting"
	"github.com/tokenmeter/tokenmeter/stage"
)

func main() { os.Exit(stage.Main(alerting.Command(), os.Args[1:])) }
