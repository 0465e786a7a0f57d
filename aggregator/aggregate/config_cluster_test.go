package aggregate

import (
	"testing"

	"github.com/tokenmeter/tokenmeter/schemas/chschema/chcluster"
)

// A cluster needs no HTTP URL of its own (each replica's comes from the layout), and its
// problems are reported with the rest.
func TestConfigValidateCluster(t *testing.T) {
	l, err := chcluster.Parse("tm=127.0.0.1:9301/8301;127.0.0.1:9303/8303")
	if err != nil {
		t.Fatal(err)
	}
	ok := Config{ClickHouseDSN: "clickhouse://127.0.0.1:9301", Partitions: 4, Cluster: l}.withDefaults()
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate() of a cluster on non-standard ports = %v, want nil", err)
	}
	l.PartitionShards = []int{0, 1, 2, 0}
	l.LocalDatabase = "tokenmeter"
	err = Config{Partitions: 4, Cluster: l}.withDefaults().Validate()
	want := "-clickhouse-cluster: partition 2 maps to shard 2, not one of the 2 shards (0..1)\n" +
		`-local-database: the shard-local database must differ from -database "tokenmeter"`
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want:\n%s", err, want)
	}
}
