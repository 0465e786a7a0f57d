package loadgen

import (
	"bytes"
	"strconv"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// invalidRule turns a valid event into one that breaks a single validation rule. Rules that
// an event.Usage can express change the event and let it be encoded; the others (a missing
// field, a wrong JSON type) patch the encoded bytes. Every result is well-formed JSON, so it
// can sit in a JSON array next to good events.
type invalidRule struct {
	name string
	// field is the start of the rejection message the collector must answer with.
	field string
	apply func(g *Generator, u *event.Usage) []byte
}

var invalidRules = [...]invalidRule{
	{"cached input exceeds input", "usage:", func(g *Generator, u *event.Usage) []byte {
		u.Usage.CachedInput = u.Usage.Input + 1 + g.rng.Int64N(1000)
		return encode(u)
	}},
	{"negative output tokens", "usage.output_tokens:", func(g *Generator, u *event.Usage) []byte {
		u.Usage.Output = -1 - g.rng.Int64N(100)
		return encode(u)
	}},
	{"missing id", "id:", func(g *Generator, u *event.Usage) []byte {
		u.ID = ""
		return bytes.Replace(encode(u), []byte(`"id":"",`), nil, 1)
	}},
	{"missing model", "model:", func(g *Generator, u *event.Usage) []byte {
		u.Model = ""
		return bytes.Replace(encode(u), []byte(`"model":"",`), nil, 1)
	}},
	{"far-future time", "time:", func(g *Generator, u *event.Usage) []byte {
		u.Time = g.cfg.Now.UTC().Add(7 * 24 * time.Hour).Truncate(time.Millisecond)
		return encode(u)
	}},
	{"bad service tier", "service_tier:", func(g *Generator, u *event.Usage) []byte {
		u.ServiceTier = "turbo"
		return encode(u)
	}},
	{"reasoning exceeds output", "usage:", func(g *Generator, u *event.Usage) []byte {
		u.Usage.Reasoning = u.Usage.Output + 1
		return encode(u)
	}},
	{"input tokens as a string", "not a usage event:", func(g *Generator, u *event.Usage) []byte {
		n := strconv.FormatInt(u.Usage.Input, 10)
		return bytes.Replace(encode(u), []byte(`"input_tokens":`+n+`,`), []byte(`"input_tokens":"`+n+`",`), 1)
	}},
	{"bad traffic tag", "tags.traffic:", func(g *Generator, u *event.Usage) []byte {
		u.Tags[event.TagTraffic] = "robot"
		return encode(u)
	}},
	{"too many tokens", "usage.input_tokens:", func(g *Generator, u *event.Usage) []byte {
		u.Usage.Input = event.DefaultLimits.MaxTokens + 1
		return encode(u)
	}},
	{"year-old time", "time:", func(g *Generator, u *event.Usage) []byte {
		u.Time = u.Time.AddDate(-1, 0, 0)
		return encode(u)
	}},
	{"negative latency", "latency_ms:", func(g *Generator, u *event.Usage) []byte {
		u.LatencyMS = -1 - g.rng.Int64N(1000)
		return encode(u)
	}},
	{"bad tag key", "tags:", func(g *Generator, u *event.Usage) []byte {
		u.Tags["Cost Center"] = u.Tags[event.TagCostCenter]
		return encode(u)
	}},
}

func encode(u *event.Usage) []byte { return appendEvent(make([]byte, 0, 512), u) }

// invalidItem makes a new event and breaks the next rule in turn.
func (g *Generator) invalidItem() Item {
	u := g.event()
	rule := &invalidRules[g.invalid%len(invalidRules)]
	g.invalid++
	return Item{JSON: rule.apply(g, &u), Event: u, Kind: Invalid}
}
