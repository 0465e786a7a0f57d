// Command enricher runs the enricher stage alone, against an external NATS JetStream. Every
// flag may also be set through an environment variable (TOKENMETER_NATS_URL,
// TOKENMETER_PRICING_DIR, TOKENMETER_<FLAG> ...); a flag on the command line wins.
package main

import (
	"os"

	"github.com/tokenmeter/tokenmeter/enricher/enrich"
	"github.com/tokenmeter/tokenmeter/stage"
)

func main() { os.Exit(stage.Main(enrich.Command(), os.Args[1:])) }
