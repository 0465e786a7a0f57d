package collect

import (
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenmeter/tokenmeter/collector/budget"
	"github.com/tokenmeter/tokenmeter/schemas/stream"
	"github.com/tokenmeter/tokenmeter/stage"
)

// RegisterFlags adds the collector's flags to fs, with c's values as their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "HTTP listen address")
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "USAGE_RAW partitions (0: the default, as every stage must agree)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", c.MaxBodyBytes, "largest request body")
	fs.IntVar(&c.MaxEvents, "max-events", c.MaxEvents, "most events in one request body")
	fs.IntVar(&c.MaxBodies, "max-bodies", c.MaxBodies, "most request bodies read at once (more are answered 503 with Retry-After)")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", c.BodyTimeout, "longest a request body may take to arrive (slower is answered 408)")
	fs.DurationVar(&c.PublishTimeout, "publish-timeout", c.PublishTimeout, "wait for JetStream acknowledgements")
	fs.StringVar(&c.KeysFile, "keys", c.KeysFile,
		"API-key registry (collector/keys JSON): requests must carry one of its keys, whose tags are applied to their events (default: no authentication, for trusted networks only)")
	fs.StringVar(&c.TagPolicyFile, "tag-policy", c.TagPolicyFile, "required-tags policy file (YAML; see collect.TagPolicy)")
	fs.DurationVar(&c.FilePoll, "file-poll", c.FilePoll, "how often the keys and tag-policy files are checked for changes")
	c.Streams.RegisterFlags(fs)
}

// Command is the collector as a process of its own (cmd/collector). It enforces the budget
// hard caps the alerter publishes; its ops address (-ops, never -addr) serves /healthz,
// /readyz and /metrics.
func Command() stage.Command {
	cfg := Config{Addr: DefaultAddr, MaxBodyBytes: DefaultMaxBodyBytes, MaxEvents: DefaultMaxEvents, MaxBodies: DefaultMaxBodies,
		BodyTimeout: DefaultBodyTimeout, PublishTimeout: DefaultPublishTimeout, FilePoll: DefaultFilePoll, Streams: stream.DefaultOptions}
	return stage.Command{
		Name:     "collector",
		OpsAddr:  "127.0.0.1:9101",
		Flags:    cfg.RegisterFlags,
		Validate: cfg.Validate,
		// The collector answers 503 while NATS is away, and keeps trying to reach it.
		NATSOptions: []nats.Option{nats.ReconnectWait(time.Second), nats.RetryOnFailedConnect(true)},
		Start: func(p stage.Process) (stage.Service, error) {
			cfg.Registerer, cfg.Gatherer, cfg.Logger = p.Registry, p.Registry, p.Log
			enf := budget.NewEnforcer(nil, p.Log)
			cfg.Budgets = enf
			js, err := jetstream.New(p.NATS)
			if err != nil {
				return nil, fmt.Errorf("watch budget hard caps: %w", err)
			}
			go enf.Follow(p.Ctx, js)
			return New(cfg, p.NATS)
		},
	}
}
