package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tokenmeter/tokenmeter/alerter/silence"
	"github.com/tokenmeter/tokenmeter/stage/ops"
)

// runSilence implements "tokenmeter silence add|list|expire": a client of the alerter's
// silences API (Alertmanager API v2), on the ops address of `tokenmeter run` or the alerter.
func runSilence(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: tokenmeter silence add|list|expire [flags]")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("silence "+sub, flag.ContinueOnError)
	alerter := fs.String("alerter", envOr("TOKENMETER_ALERTER_URL", "http://127.0.0.1:9090"), "the alerter's ops address: `tokenmeter run -ops`, or the alerter's -ops")
	tokenFile := fs.String("token-file", os.Getenv("TOKENMETER_SILENCE_TOKEN_FILE"), "file holding the alerter's silence token, when it has one (-silence-token-file)")
	var matchers matcherFlags
	var (
		dur     = new(time.Duration)
		comment = new(string)
		by      = new(string)
		start   = new(string)
		all     = new(bool)
	)
	switch sub {
	case "add":
		fs.Var(&matchers, "match", "label=value the alerts must have (repeat for more: all must hold)")
		fs.DurationVar(dur, "for", 2*time.Hour, "how long the silence lasts")
		fs.StringVar(start, "start", "", "when it starts (RFC 3339; default now)")
		fs.StringVar(comment, "comment", "", "why")
		fs.StringVar(by, "by", currentUser(), "who silences")
	case "list":
		fs.BoolVar(all, "all", false, "also the expired ones (kept 5 days)")
	case "expire":
	default:
		return fmt.Errorf("unknown subcommand %q: want add, list or expire", sub)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := strings.TrimRight(*alerter, "/")
	token, err := ops.SecretFile("silence token", *tokenFile)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: bearer{token}}
	switch sub {
	case "add":
		if len(matchers) == 0 {
			return errors.New("-match: at least one label=value")
		}
		at := time.Now().UTC()
		if *start != "" {
			t, err := time.Parse(time.RFC3339, *start)
			if err != nil {
				return fmt.Errorf("-start: %q is not an RFC 3339 time", *start)
			}
			at = t
		}
		a := silence.APISilence{Matchers: matchers, StartsAt: at, EndsAt: at.Add(*dur), CreatedBy: *by, Comment: *comment}
		var out struct {
			SilenceID string `json:"silenceID"`
		}
		if err := call(ctx, c, http.MethodPost, base+"/api/v2/silences", a, &out); err != nil {
			return err
		}
		fmt.Fprintln(stdout, out.SilenceID)
	case "list":
		var list []silence.APISilence
		if err := call(ctx, c, http.MethodGet, base+"/api/v2/silences", nil, &list); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tMATCHERS\tSTARTS\tENDS\tBY\tCOMMENT")
		for _, s := range list {
			if s.Status != nil && s.Status.State == "expired" && !*all {
				continue
			}
			var ms []string
			for _, m := range s.Matchers {
				ms = append(ms, m.Name+"="+m.Value)
			}
			state := ""
			if s.Status != nil {
				state = s.Status.State
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, state, strings.Join(ms, ","),
				s.StartsAt.UTC().Format(time.RFC3339), s.EndsAt.UTC().Format(time.RFC3339), s.CreatedBy, s.Comment)
		}
		return tw.Flush()
	case "expire":
		if fs.NArg() == 0 {
			return errors.New("usage: tokenmeter silence expire ID...")
		}
		for _, id := range fs.Args() {
			if err := call(ctx, c, http.MethodDelete, base+"/api/v2/silence/"+id, nil, nil); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "expired", id)
		}
	}
	return nil
}

// call sends a JSON request and decodes a JSON answer into out (when not nil); an answer other
// than 200 is an error with the API's message.
func call(ctx context.Context, c *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("the alerter's silences API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("the alerter's silences API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var msg string
		if json.Unmarshal(data, &msg) != nil {
			msg = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("the alerter answered %s: %s", resp.Status, msg)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// bearer adds the silence token, when there is one, to every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// matcherFlags collects -match label=value flags.
type matcherFlags []silence.Matcher

func (m *matcherFlags) String() string { return "" }

func (m *matcherFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q is not label=value", v)
	}
	eq := true
	*m = append(*m, silence.Matcher{Name: name, Value: value, IsEqual: &eq})
	return nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
