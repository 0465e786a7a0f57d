package pricing

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/pricefile"
)

// TestReadmeExamples checks that the examples of schemas/pricefile/README.md parse, and that
// its overrides example builds with the shipped catalogue and prices what it says.
func TestReadmeExamples(t *testing.T) {
	data, err := os.ReadFile("../../schemas/pricefile/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, part := range strings.Split(string(data), "```yaml\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatal("unterminated yaml block in README.md")
		}
		blocks = append(blocks, block)
	}
	if len(blocks) != 2 {
		t.Fatalf("README.md has %d yaml blocks, want 2 (a pricing file, an overrides file)", len(blocks))
	}
	if _, err := pricefile.Parse("README pricing example", []byte(blocks[0])); err != nil {
		t.Errorf("the pricing file example does not parse: %v", err)
	}
	o, err := pricefile.ParseOverrides("README overrides example", []byte(blocks[1]))
	if err != nil {
		t.Fatalf("the overrides example does not parse: %v", err)
	}
	c, err := Build(shippedFiles(t), []pricefile.Overrides{o})
	if err != nil {
		t.Fatalf("the overrides example does not build with the shipped catalogue: %v", err)
	}
	at := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		provider, model string
		want            Quote
	}{
		// gpt-4o at 20% off: 1000·2.00 + 1000·8.00 µUSD.
		{"azure", "prod-gpt4o-eastus", Quote{true, "gpt-4o", "azure/gpt-4o@2024-10-01/standard", 12_500_000_000, 0}},
		{"openai", "gpt-4o", Quote{true, "gpt-4o", "openai/gpt-4o@2024-10-01/standard/discount=20%@2025-08-01", 10_000_000_000, 0}},
		// gpt-4o-mini at the provider-wide 10%: 1000·0.135 + 1000·0.54 µUSD.
		{"openai", "gpt-4o-mini", Quote{true, "gpt-4o-mini", "openai/gpt-4o-mini@2024-07-18/standard/discount=10%@2025-07-01", 675_000_000, 0}},
		// Explicit Sonnet rates: 1000·2.40 + 1000·12 µUSD.
		{"anthropic", "claude-sonnet-4-5-20250929", Quote{true, "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5@2025-10-01/standard/org", 14_400_000_000, 0}},
		{"openai", "support-bot", Quote{true, "ft:gpt-4o-mini-2024-07-18:example-corp::abc123", "openai/ft:gpt-4o-mini-2024-07-18:example-corp::abc123@2025-01-01/standard/org", 1_500_000_000, 0}},
		{"selfhosted", "llama-internal", Quote{true, "llama-internal", "selfhosted/llama-internal@2025-01-01/standard/org", 100_000_000, 0}},
	} {
		if got := c.Price(tt.provider, tt.model, "", at, event.Tokens{Input: 1000, Output: 1000}, false); got != tt.want {
			t.Errorf("Price(%s, %s):\n got %+v\nwant %+v", tt.provider, tt.model, got, tt.want)
		}
	}
}
