package proxy

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/tokenmeter/tokenmeter/collector/keys"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Bindings attribute calls by the API key they carry, from a collector/keys registry: the
// SHA-256 of a key names the tags (team, cost centre, …) every call made with it is charged
// to. A bound tag cannot be overridden by a request header, so a service cannot charge its
// spend to a team its key does not belong to. The proxy keeps only hashes; the file never
// holds a key.
type Bindings struct {
	reg *keys.Registry
}

// Binding is one key's attribution.
type Binding = keys.Key

// Unallocated is the team of a call whose key lists the teams it may charge (keys.Key.Teams)
// when X-Tokenmeter-Team names none of them and the key binds no default team. The proxy
// cannot refuse the call — it has already gone to the provider — so it charges nobody.
const Unallocated = "unallocated"

// LoadBindings reads a key registry file (see collector/keys).
func LoadBindings(path string) (*Bindings, error) {
	r, err := keys.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load key bindings: %w", err)
	}
	return &Bindings{reg: r}, nil
}

// ParseBindings reads the JSON of a key registry file and reports every problem in it (see
// keys.Parse).
func ParseBindings(data []byte) (*Bindings, error) {
	r, err := keys.Parse(data)
	if err != nil {
		return nil, err
	}
	return &Bindings{reg: r}, nil
}

// Len is the number of bound keys.
func (b *Bindings) Len() int {
	if b == nil {
		return 0
	}
	return b.reg.Len()
}

// byHash yields every binding with its key's hash.
func (b *Bindings) byHash(yield func([sha256.Size]byte, Binding) bool) {
	for h, k := range b.reg.All() {
		if !yield(h, k) {
			return
		}
	}
}

// Lookup returns the binding of the API key a request carries, if any: the bearer token of
// Authorization (OpenAI and compatible), x-api-key (Anthropic) or api-key (Azure OpenAI).
//
// For a key that lists the teams it may charge, the returned binding's team is the one
// X-Tokenmeter-Team names when the key allows it, else the key's default team, else
// Unallocated; as a bound tag it then wins over the header.
func (b *Bindings) Lookup(h http.Header) (Binding, bool) {
	if b.Len() == 0 {
		return Binding{}, false
	}
	bd, ok := b.reg.Lookup(apiKey(h))
	if !ok || len(bd.Teams) == 0 {
		return bd, ok
	}
	team, allowed := bd.Team(h.Get(HeaderTeam))
	if !allowed {
		team = bd.Tags[event.TagTeam]
	}
	if team == "" && h.Get(HeaderTeam) != "" {
		team = Unallocated
	}
	if team != "" {
		tags := make(map[string]string, len(bd.Tags)+1)
		maps.Copy(tags, bd.Tags)
		tags[event.TagTeam] = team
		bd.Tags = tags
	}
	return bd, true
}

func apiKey(h http.Header) string {
	if auth := h.Get("Authorization"); auth != "" {
		if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
	}
	if k := h.Get("X-Api-Key"); k != "" {
		return k
	}
	return h.Get("Api-Key")
}
