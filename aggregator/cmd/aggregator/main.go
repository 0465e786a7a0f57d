// Command aggregator runs the aggregator stage alone, against an external NATS JetStream and
// ClickHouse: it writes every partition it owns (-own) to usage_events and its roll-ups once,
// and the workflow outcomes to outcomes. Every flag may also be set through an environment
// variable (TOKENMETER_NATS_URL, TOKENMETER_CLICKHOUSE_DSN, TOKENMETER_<FLAG> ...); a flag on
// the command line wins.
package main

import (
	"os"

	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
	"github.com/tokenmeter/tokenmeter/stage"
)

func main() { os.Exit(stage.Main(aggregate.Command(testHooks), os.Args[1:])) }
