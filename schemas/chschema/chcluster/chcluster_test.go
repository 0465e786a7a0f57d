package chcluster

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	f := func(in string, want Layout) {
		t.Helper()
		got, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %+v, want %+v", in, got, want)
		}
	}
	f("", Layout{})
	f("tm=ch-0a:9000,ch-0b:9000;ch-1a:9000,ch-1b:9000", Layout{Name: "tm", Shards: [][]Replica{
		{{Addr: "ch-0a:9000"}, {Addr: "ch-0b:9000"}}, {{Addr: "ch-1a:9000"}, {Addr: "ch-1b:9000"}}}})
	f("tm=127.0.0.1:9301/8301, 127.0.0.1:9302/8302", Layout{Name: "tm", Shards: [][]Replica{
		{{Addr: "127.0.0.1:9301", HTTPPort: 8301}, {Addr: "127.0.0.1:9302", HTTPPort: 8302}}}})

	for _, bad := range []string{"tm", "tm=", "tm=h:9000/x", "tm=h:9000/70000"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", bad)
		}
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	l := Layout{
		Name:            "my-cluster",
		Shards:          [][]Replica{{{Addr: "a:9000"}, {Addr: "a:9000"}}, {}, {{Addr: "b:9301"}}, {{Addr: "nohost"}}},
		PartitionShards: []int{0, 7},
		LocalDatabase:   "1x",
	}
	err := l.Validate(4)
	if err == nil {
		t.Fatal("Validate = nil, want errors")
	}
	for _, want := range []string{
		`cluster name "my-cluster"`,
		`local database "1x"`,
		"shard 0: replica a:9000 is listed twice",
		"shard 1 has no replica",
		"replica b:9301: the HTTP port cannot be derived from native port 9301; write it as b:9301/<http port>",
		`shard 3: replica address "nohost"`,
		"partition → shard map has 2 entries for 4 partitions",
		"partition 1 maps to shard 7, not one of the 4 shards (0..3)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q:\n%v", want, err)
		}
	}
	if err := (Layout{}).Validate(4); err != nil {
		t.Errorf("Validate of no cluster = %v, want nil", err)
	}
}

func TestShardOfAndLocal(t *testing.T) {
	l := Layout{Name: "tm", Shards: make([][]Replica, 3)}
	for p, want := range []int{0, 1, 2, 0, 1} {
		if got := l.ShardOf(p); got != want {
			t.Errorf("ShardOf(%d) = %d, want %d (mod 3)", p, got, want)
		}
	}
	l.PartitionShards = []int{2, 2, 0}
	if got := l.ShardOf(1); got != 2 {
		t.Errorf("ShardOf(1) with an explicit map = %d, want 2", got)
	}
	if got := l.Local("tokenmeter"); got != "tokenmeter_local" {
		t.Errorf("Local = %q, want tokenmeter_local", got)
	}
	l.LocalDatabase = "shard_data"
	if got := l.Local("tokenmeter"); got != "shard_data" {
		t.Errorf("Local = %q, want shard_data", got)
	}
}

func TestReplicaHTTPURL(t *testing.T) {
	f := func(r Replica, user, pass, want string) {
		t.Helper()
		got, err := r.HTTPURL(user, pass, url.Values{"insert_deduplicate": {"0"}})
		if err != nil || got != want {
			t.Errorf("%+v.HTTPURL = %q, %v; want %q", r, got, err, want)
		}
	}
	f(Replica{Addr: "ch:9000"}, "w", "s3cret", "http://w:s3cret@ch:8123/?insert_deduplicate=0")
	f(Replica{Addr: "ch:9440"}, "", "", "https://ch:8443/?insert_deduplicate=0")
	f(Replica{Addr: "127.0.0.1:9301", HTTPPort: 8301}, "", "", "http://127.0.0.1:8301/?insert_deduplicate=0")
}

func TestParseShardMap(t *testing.T) {
	got, err := ParseShardMap("0, 1,0,1")
	if err != nil || !reflect.DeepEqual(got, []int{0, 1, 0, 1}) {
		t.Errorf("ParseShardMap = %v, %v; want [0 1 0 1]", got, err)
	}
	if got, err := ParseShardMap(""); got != nil || err != nil {
		t.Errorf("ParseShardMap(\"\") = %v, %v; want nil, nil", got, err)
	}
	if _, err := ParseShardMap("0,-1"); err == nil {
		t.Error("ParseShardMap(\"0,-1\") = nil error, want one")
	}
}

// Whatever the flag holds, Parse and Validate return (no panic), and a layout both accept
// names a replica address for every replica.
func FuzzParse(f *testing.F) {
	f.Add("tm=ch-0a:9000,ch-0b:9000;ch-1a:9000,ch-1b:9000")
	f.Add("tm=127.0.0.1:9301/8301;;")
	f.Add("=/;,=")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		if l.Validate(len(l.Shards)+1) != nil {
			return
		}
		for _, rs := range l.Shards {
			for _, r := range rs {
				if _, err := r.HTTPURL("u", "p", nil); err != nil {
					t.Errorf("valid layout %q: replica %+v: %v", s, r, err)
				}
			}
		}
	})
}
