package enrich

import (
	"flag"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage"
)

// RegisterFlags adds the enricher's flags to fs, with c's values as their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PricingDir, "pricing", c.PricingDir, "directory of pricing files (default: the shipped catalogue)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "concurrent fetch-price-publish loops")
	fs.StringVar(&c.AttributionFile, "attribution", c.AttributionFile, "attribution rules file (default: none; events keep their tags)")
	fs.StringVar(&c.EmitterBindingsFile, "emitter-bindings", c.EmitterBindingsFile,
		"emitter bindings file (JSON): the tags and teams each NATS emitter identity's events are charged to (default: none; emitters' events keep their tags)")
	fs.DurationVar(&c.PricingPoll, "pricing-poll", c.PricingPoll, "how often the pricing directory, attribution file and emitter bindings file are checked for changes")
	fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "how long JetStream waits for an ack before redelivering a raw message (0: the default)")
	fs.Int64Var(&c.MaxAhead, "max-ahead", c.MaxAhead, "bytes USAGE_ENRICHED may hold, while the aggregators take from it, before the enricher waits for them (0: 64 MiB; negative: never wait)")
	c.Streams.RegisterFlags(fs)
}

// Command is the enricher as a process of its own (cmd/enricher).
func Command() stage.Command {
	cfg := Config{Workers: 2, PricingPoll: 5 * time.Second, Streams: stream.DefaultOptions}
	return stage.Command{
		Name:     "enricher",
		OpsAddr:  "127.0.0.1:9092",
		Flags:    cfg.RegisterFlags,
		Validate: func() error { return cfg.WithDefaults().Validate() },
		Start: func(p stage.Process) (stage.Service, error) {
			cfg.Registerer, cfg.Logger = p.Registry, p.Log
			return New(cfg, p.NATS)
		},
	}
}
