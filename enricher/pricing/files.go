package pricing

import (
	"fmt"
	"io/fs"

	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// DefaultFiles returns the parsed files of the shipped catalogue (the files Default builds
// from), for tools that show or check the rows themselves.
func DefaultFiles() ([]pricefile.File, error) {
	sub, err := fs.Sub(catalogFS, "catalog")
	if err != nil {
		return nil, err
	}
	d, err := readFS(sub)
	if err != nil {
		return nil, fmt.Errorf("read built-in pricing catalogue: %w", err)
	}
	return d.Files()
}

// Model returns the canonical name a provider's model name resolves to, by the rules Price
// uses, whatever the time; ok is false when the provider or the name is unknown.
func (c *Catalog) Model(providerName, modelName string) (name string, ok bool) {
	p := c.providers[lower(providerName)]
	if p == nil {
		return "", false
	}
	m := p.lookup(modelName)
	if m == nil {
		return "", false
	}
	return m.name, true
}
