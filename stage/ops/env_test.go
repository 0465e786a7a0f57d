package ops

import (
	"flag"
	"io"
	"testing"
	"time"
)

func TestApplyEnv(t *testing.T) {
	fs := flag.NewFlagSet("stage", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	nats := fs.String("nats", "nats://127.0.0.1:4222", "")
	addr := fs.String("addr", ":8080", "")
	parts := fs.Int("partitions", 4, "")
	wait := fs.Duration("batch-max-wait", 200*time.Millisecond, "")
	quiet := fs.Bool("quiet", false, "")
	if err := fs.Parse([]string{"-addr", ":9999"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENMETER_NATS_URL", "nats://nats:4222") // renamed
	t.Setenv("TOKENMETER_ADDR", ":7777")                // the command line wins
	t.Setenv("TOKENMETER_PARTITIONS", "8")
	t.Setenv("TOKENMETER_BATCH_MAX_WAIT", "1s")
	t.Setenv("TOKENMETER_QUIET", "") // empty: not set
	if err := ApplyEnv(fs, map[string]string{"nats": "TOKENMETER_NATS_URL"}); err != nil {
		t.Fatalf("ApplyEnv: %v", err)
	}
	if *nats != "nats://nats:4222" || *addr != ":9999" || *parts != 8 || *wait != time.Second || *quiet {
		t.Errorf("after ApplyEnv: nats %q, addr %q, partitions %d, wait %v, quiet %v; want nats://nats:4222, :9999, 8, 1s, false",
			*nats, *addr, *parts, *wait, *quiet)
	}
}

func TestApplyEnvNamesEveryBadValue(t *testing.T) {
	fs := flag.NewFlagSet("stage", flag.ContinueOnError)
	fs.Int("partitions", 4, "")
	fs.Duration("ack-wait", time.Minute, "")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOKENMETER_PARTITIONS", "four")
	t.Setenv("TOKENMETER_ACK_WAIT", "2 minutes")
	err := ApplyEnv(fs, StageEnv)
	want := `TOKENMETER_ACK_WAIT="2 minutes" (flag -ack-wait): parse error` + "\n" +
		`TOKENMETER_PARTITIONS="four" (flag -partitions): parse error`
	if err == nil || err.Error() != want {
		t.Errorf("ApplyEnv error:\n%v\nwant:\n%s", err, want)
	}
}

func TestEnvNameAndFlagOf(t *testing.T) {
	if got := EnvName("batch-max-wait"); got != "TOKENMETER_BATCH_MAX_WAIT" {
		t.Errorf("EnvName(batch-max-wait) = %s", got)
	}
	for key, want := range map[string]string{
		"TOKENMETER_BATCH_MAX_WAIT": "batch-max-wait", "TOKENMETER_NATS_URL": "nats", "TOKENMETER_OPS_ADDR": "ops",
		"TOKENMETER_CLICKHOUSE_DATABASE": "database", "TOKENMETER_PARTITIONS": "partitions", "GOGC": "",
	} {
		if got := FlagOf(key); got != want {
			t.Errorf("FlagOf(%s) = %q, want %q", key, got, want)
		}
	}
}
