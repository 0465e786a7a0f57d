package aggregate

import (
	"strings"
	"testing"
)

// TestConfigErrorsHideTheDSNPassword: a DSN that does not parse is named in the error with
// its password masked (url.Parse's own error quotes the whole DSN).
func TestConfigErrorsHideTheDSNPassword(t *testing.T) {
	for _, c := range []Config{
		{ClickHouseDSN: "clickhouse://writer:s3cret@ch:notaport"},
		{ClickHouseDSN: "clickhouse://writer:s3cret@ch:9000", ClickHouseHTTP: "ftp://writer:s3cret@ch:8123"},
	} {
		err := c.withDefaults().Validate()
		if err == nil {
			t.Fatalf("%+v: Validate accepted a broken DSN", c)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
