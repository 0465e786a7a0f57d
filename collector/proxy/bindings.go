package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Bindings attribute calls by the API key they carry: the SHA-256 of a key names the tags
// (team, cost centre, …) every call made with it is charged to. A bound tag cannot be
// overridden by a request header, so a service cannot charge its spend to a team its key
// does not belong to. The proxy keeps only hashes; the file never holds a key.
type Bindings struct {
	byHash map[[sha256.Size]byte]Binding
}

// Binding is one key's attribution.
type Binding struct {
	// Name identifies the key in logs and metrics (never the key itself).
	Name string            `json:"name"`
	Tags map[string]string `json:"tags"`
}

// bindingsFile is the JSON format of a bindings file:
//
//	{"keys": [
//	  {"sha256": "<64 hex digits: printf %s \"$KEY\" | sha256sum>",
//	   "name": "search-prod", "tags": {"team": "search", "cost_center": "cc-42"}}
//	]}
type bindingsFile struct {
	Keys []struct {
		SHA256 string            `json:"sha256"`
		Name   string            `json:"name"`
		Tags   map[string]string `json:"tags"`
	} `json:"keys"`
}

// maxBindingsFile bounds a bindings file; a million keys fit in far less.
const maxBindingsFile = 64 << 20

// LoadBindings reads a bindings file (see ParseBindings).
func LoadBindings(path string) (*Bindings, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load key bindings: %w", err)
	}
	if st.Size() > maxBindingsFile {
		return nil, fmt.Errorf("load key bindings %s: %d bytes, more than %d", path, st.Size(), maxBindingsFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load key bindings: %w", err)
	}
	b, err := ParseBindings(data)
	if err != nil {
		return nil, fmt.Errorf("load key bindings %s: %w", path, err)
	}
	return b, nil
}

// ParseBindings reads the JSON of a bindings file and reports every problem in it: a hash
// that is not 64 hex digits, a hash bound twice, a key without tags, an invalid tag.
func ParseBindings(data []byte) (*Bindings, error) {
	var f bindingsFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	b := &Bindings{byHash: make(map[[sha256.Size]byte]Binding, len(f.Keys))}
	var errs []error
	for i, k := range f.Keys {
		var h [sha256.Size]byte
		raw, err := hex.DecodeString(strings.ToLower(k.SHA256))
		if err != nil || len(raw) != sha256.Size {
			errs = append(errs, fmt.Errorf("keys[%d]: sha256 %q is not 64 hex digits", i, clip(k.SHA256)))
			continue
		}
		copy(h[:], raw)
		if _, dup := b.byHash[h]; dup {
			errs = append(errs, fmt.Errorf("keys[%d]: sha256 %s is bound twice", i, k.SHA256))
			continue
		}
		if len(k.Tags) == 0 {
			errs = append(errs, fmt.Errorf("keys[%d] (%s): no tags", i, k.Name))
		}
		for key, v := range k.Tags {
			if err := checkTag(key, v); err != nil {
				errs = append(errs, fmt.Errorf("keys[%d] (%s): %w", i, k.Name, err))
			}
		}
		b.byHash[h] = Binding{Name: k.Name, Tags: k.Tags}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b, nil
}

// Len is the number of bound keys.
func (b *Bindings) Len() int {
	if b == nil {
		return 0
	}
	return len(b.byHash)
}

// Lookup returns the binding of the API key a request carries, if any: the bearer token of
// Authorization (OpenAI and compatible), x-api-key (Anthropic) or api-key (Azure OpenAI).
func (b *Bindings) Lookup(h http.Header) (Binding, bool) {
	if b.Len() == 0 {
		return Binding{}, false
	}
	key := apiKey(h)
	if key == "" {
		return Binding{}, false
	}
	bd, ok := b.byHash[sha256.Sum256([]byte(key))]
	return bd, ok
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
