// Command collector runs the collector stage alone, against an external NATS JetStream:
// usage events over HTTP (POST /v1/events, /v1/traces, /v1/outcomes) into USAGE_RAW. Every
// flag may also be set through an environment variable (TOKENMETER_NATS_URL,
// TOKENMETER_KEYS_FILE, TOKENMETER_<FLAG> ...); a flag on the command line wins.
package main

import (
	"os"

	"github.com/tokenmeter/tokenmeter/collector/collect"
	"github.com/tokenmeter/tokenmeter/stage"
)

func main() { os.Exit(stage.Main(collect.Command(), os.Args[1:])) }
