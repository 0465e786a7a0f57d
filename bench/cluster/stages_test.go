//go:build chaos

package cluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// buildStages builds nats-server and the four stages into a temporary directory for
// deploy/cluster/cluster.sh (TOKENMETER_BIN) and returns it.
func buildStages(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for name, pkg := range map[string]string{
		"nats-server": "github.com/nats-io/nats-server/v2",
		"collector":   "github.com/tokenmeter/tokenmeter/collector/cmd/collector",
		"enricher":    "github.com/tokenmeter/tokenmeter/enricher/cmd/enricher",
		"aggregator":  "github.com/tokenmeter/tokenmeter/aggregator/cmd/aggregator",
		"alerter":     "github.com/tokenmeter/tokenmeter/alerter/cmd/alerter",
	} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return bin
}

// logTails logs the end of every log of the cluster in dir.
func logTails(t *testing.T, dir string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		t.Logf("--- %s\n%s", l, data[max(0, len(data)-2000):])
	}
}
