package pricing

import "testing"

func TestCatalogModel(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		provider, name, want string
		ok                   bool
	}{
		{"openai", "gpt-4o-2024-08-06", "gpt-4o", true},
		{"aws.bedrock", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5", true},
		{"bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "global.anthropic.claude-sonnet-4-5", true},
		{"mistral", "mistral-large-latest", "mistral-large-latest", true},
		{"openai", "no-such-model", "", false},
		{"nobody", "gpt-4o", "", false},
	} {
		if got, ok := c.Model(tt.provider, tt.name); got != tt.want || ok != tt.ok {
			t.Errorf("Model(%q, %q) = %q, %v; want %q, %v", tt.provider, tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDefaultFiles(t *testing.T) {
	files, err := DefaultFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(shippedFiles(t)) {
		t.Errorf("DefaultFiles: %d files, want %d", len(files), len(shippedFiles(t)))
	}
}
