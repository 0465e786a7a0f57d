package proxy

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tokenmeter/tokenmeter/collector/normalize"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// HeaderPrefix starts every header the proxy reads and strips before forwarding.
const HeaderPrefix = "X-Tokenmeter-"

// The request headers that attribute a call (canonical form; any case is accepted). Every
// header starting with HeaderPrefix is removed before the request is forwarded, read or not.
const (
	HeaderTeam          = "X-Tokenmeter-Team"
	HeaderFeature       = "X-Tokenmeter-Feature"
	HeaderEnv           = "X-Tokenmeter-Env"
	HeaderCostCenter    = "X-Tokenmeter-Cost-Center"
	HeaderTraffic       = "X-Tokenmeter-Traffic"
	HeaderWorkflowID    = "X-Tokenmeter-Workflow-Id"
	HeaderPromptVersion = "X-Tokenmeter-Prompt-Version"
	// HeaderTagPrefix starts a header naming any other tag: X-Tokenmeter-Tag-Region: eu
	// becomes the tag region=eu (the key lower-cased, '-' read as '_').
	HeaderTagPrefix = "X-Tokenmeter-Tag-"
)

var headerTags = map[string]string{
	HeaderTeam:       event.TagTeam,
	HeaderFeature:    event.TagFeature,
	HeaderEnv:        event.TagEnv,
	HeaderCostCenter: event.TagCostCenter,
	HeaderTraffic:    event.TagTraffic,
}

// attribution is what a request says about who to charge.
type attribution struct {
	tags                      map[string]string
	workflowID, promptVersion string
	// binding names the API key's binding, "" when the key is not bound.
	binding string
	// dropped counts header tags refused as invalid or overridden by the binding.
	dropped int
}

// attribute reads the attribution headers of h and the binding of its API key. A tag the
// binding sets wins over the same tag from a header. A header tag that would make the event
// invalid is dropped (and counted) rather than losing the whole event.
func attribute(h http.Header, b *Bindings) attribution {
	var a attribution
	for name, vs := range h {
		if !strings.HasPrefix(name, HeaderPrefix) || len(vs) == 0 {
			continue
		}
		v := vs[0]
		switch name {
		case HeaderWorkflowID:
			a.workflowID = checkedString(v, &a.dropped)
			continue
		case HeaderPromptVersion:
			a.promptVersion = checkedString(v, &a.dropped)
			continue
		}
		key, ok := headerTags[name]
		if !ok {
			suffix, isTag := strings.CutPrefix(name, HeaderTagPrefix)
			if !isTag {
				continue // an unknown X-Tokenmeter- header: stripped, not read
			}
			key = strings.ReplaceAll(strings.ToLower(suffix), "-", "_")
		}
		if checkTag(key, v) != nil || len(a.tags) >= event.DefaultLimits.MaxTags {
			a.dropped++
			continue
		}
		if a.tags == nil {
			a.tags = make(map[string]string)
		}
		a.tags[key] = v
	}
	if bd, ok := b.Lookup(h); ok {
		a.binding = bd.Name
		if a.binding == "" {
			a.binding = "unnamed"
		}
		if a.tags == nil {
			a.tags = make(map[string]string, len(bd.Tags))
		}
		for k, v := range bd.Tags {
			if old, set := a.tags[k]; set && old != v {
				a.dropped++
			}
			a.tags[k] = v
		}
		// The binding's tags count against the limit first: trim header tags, never bound ones.
		for k := range a.tags {
			if len(a.tags) <= event.DefaultLimits.MaxTags {
				break
			}
			if _, bound := bd.Tags[k]; !bound {
				delete(a.tags, k)
				a.dropped++
			}
		}
	}
	return a
}

// stripHeaders removes every attribution header before the request is forwarded.
func stripHeaders(h http.Header) {
	for name := range h {
		if strings.HasPrefix(name, HeaderPrefix) {
			delete(h, name)
		}
	}
}

// checkTag applies the v1 tag rules to one tag.
// checkTag is normalize.CheckTag, refusing as well the characters event.Validate refuses
// (event.Invisible): a header tag that would make the event invalid must be dropped, not lose
// the event — and with it the metering of the call.
func checkTag(key, value string) error {
	if err := normalize.CheckTag(key, value); err != nil {
		return err
	}
	if !cleanString(value) {
		return fmt.Errorf("tag %s: the value holds an invisible or direction-changing character", key)
	}
	return nil
}

func checkedString(v string, dropped *int) string {
	if len(v) > event.DefaultLimits.MaxString || !cleanString(v) {
		*dropped++
		return ""
	}
	return v
}

func cleanString(s string) bool {
	return normalize.CleanString(s) && strings.IndexFunc(s, func(r rune) bool { return event.Invisible(r) != "" }) < 0
}
