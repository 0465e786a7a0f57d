package stage

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/testkit"
	"github.com/tokenmeter/tokenmeter/testkit/natstest"
)

// service answers /readyz with ready and, when run, reads the stage's own /readyz and /extra
// through the ops address, then stops.
type service struct {
	t     *testing.T
	ops   string
	ready error
	got   []string
}

func (s *service) Ready() error { return s.ready }

func (s *service) Run(context.Context) error {
	// The ops server starts listening in the background.
	testkit.Eventually(s.t, 10*time.Second, "the ops address listening", func() bool {
		c, err := net.Dial("tcp", s.ops)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	for _, path := range []string{"/readyz", "/extra"} {
		resp, err := http.Get("http://" + s.ops + path)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s.got = append(s.got, fmt.Sprintf("%s %d %s", path, resp.StatusCode, body))
	}
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestMainRunsAStage runs a stage the way every stage command does: its flag, also from the environment;
// its Validate before anything connects; its ops endpoints and its own routes while it runs;
// exit status 0 after Run returns, 2 for what stops it from starting.
func TestMainRunsAStage(t *testing.T) {
	nats := natstest.Start(t, t.TempDir(), -1)
	ops := freeAddr(t)
	command := func(svc *service, level *int) Command {
		return Command{
			Name: "probe",
			Flags: func(fs *flag.FlagSet) {
				fs.IntVar(level, "level", 1, "a stage flag")
			},
			Validate: func() error {
				if *level < 1 {
					return fmt.Errorf("-level (%d) must be at least 1", *level)
				}
				return nil
			},
			Start: func(p Process) (Service, error) {
				if p.NATS == nil || !p.NATS.IsConnected() {
					return nil, errors.New("not connected to NATS")
				}
				p.Ops.HandleFunc("GET /extra", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "extra") })
				return svc, nil
			},
		}
	}
	args := []string{"-nats", nats.ClientURL(), "-ops", ops}

	svc, level := &service{t: t, ops: ops, ready: errors.New("warming up")}, 0
	t.Setenv("TOKENMETER_LEVEL", "7")
	if code := Main(command(svc, &level), args); code != 0 || level != 7 {
		t.Fatalf("Main = %d with -level %d, want 0 with 7 from TOKENMETER_LEVEL", code, level)
	}
	want := "/readyz 503 warming up\n|/extra 200 extra"
	if got := fmt.Sprint(svc.got[0], "|", svc.got[1]); got != want {
		t.Errorf("ops answered %q, want %q", got, want)
	}

	for _, c := range []struct {
		env  string
		args []string
	}{
		{"", append(args, "-level", "0")},   // refused by Validate
		{"many", args},                      // TOKENMETER_LEVEL does not parse
		{"", append(args, "-no-such-flag")}, // unknown flag
	} {
		t.Setenv("TOKENMETER_LEVEL", c.env)
		svc := &service{t: t, ops: ops}
		if code := Main(command(svc, new(int)), c.args); code != 2 || svc.got != nil {
			t.Errorf("Main(%v) with TOKENMETER_LEVEL=%q = %d, ran %v; want 2 without running", c.args, c.env, code, svc.got)
		}
	}
}
