package alerting

import (
	"strings"
	"testing"
)

// TestConfigErrorHidesTheDSNPassword: a DSN that does not parse is named in the error with
// its password masked (url.Parse's own error quotes the whole DSN).
func TestConfigErrorHidesTheDSNPassword(t *testing.T) {
	err := Config{ClickHouseDSN: "clickhouse://writer:s3cret@ch:notaport"}.WithDefaults().Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), `-clickhouse "clickhouse://…"`) {
		t.Errorf("Validate = %v", err)
	}
}
