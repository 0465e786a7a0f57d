// Package commands gives the deployment tests the flags of the stage commands the image
// builds, so that they check a manifest's flags and environment variables against what the
// commands define rather than against their source text.
package commands

import (
	"flag"
	"path"

	"github.com/tokenmeter/tokenmeter/aggregator/aggregate"
	"github.com/tokenmeter/tokenmeter/alerter/alerting"
	"github.com/tokenmeter/tokenmeter/collector/collect"
	"github.com/tokenmeter/tokenmeter/enricher/enrich"
	"github.com/tokenmeter/tokenmeter/stage"
)

// FlagSet is the flag set of the stage command built from dir (".../cmd/<name>"), or nil
// when dir holds no stage command.
func FlagSet(dir string) *flag.FlagSet {
	var c stage.Command
	switch path.Base(dir) {
	case "collector":
		c = collect.Command()
	case "enricher":
		c = enrich.Command()
	case "aggregator":
		c = aggregate.Command(nil)
	case "alerter":
		c = alerting.Command()
	default:
		return nil
	}
	fs, _ := c.FlagSet()
	return fs
}
