package main

import (
	"bytes"
	"strings"
	"testing"
)

// The command refuses bad invocations with exit status 2 and names every bad flag.
func TestRunRejectsBadArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"usage: chaos reconcile"}},
		{[]string{"audit"}, []string{"usage: chaos reconcile"}},
		{[]string{"reconcile", "extra"}, []string{`unexpected arguments ["extra"]`}},
		{[]string{"reconcile", "-nats", "", "-clickhouse", "http://[::1", "-database", "", "-partitions", "0", "-timeout", "0s"},
			[]string{"-nats is empty", `-clickhouse "http://[::1"`, "-database is empty", "-partitions (0) must be between 1 and 65536", "-timeout (0s) must be positive"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("run(%q) stderr %q does not say %q", c.args, stderr.String(), w)
			}
		}
	}
}

// Against a NATS server that does not answer, the command fails with status 1 and says what
// it was doing.
func TestRunReportsUnreachableNATS(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"reconcile", "-nats", "nats://127.0.0.1:1"}, &stdout, &stderr); code != 1 {
		t.Fatalf("run = %d, want 1 (stderr %q)", code, stderr.String())
	}
	if !strings.HasPrefix(stderr.String(), "connect to NATS nats://127.0.0.1:1: ") {
		t.Errorf("stderr %q does not name the NATS connection", stderr.String())
	}
}
