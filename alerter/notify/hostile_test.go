package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile is an alert whose event-chosen text tries to ping everyone, make a link, forge a
// line of the message and hide text behind a bidirectional override.
func hostile() Alert {
	a := firing()
	a.Labels = map[string]string{"alertname": "team_spike", "severity": "page", "team": "<!channel> & <@U024BE7LH>",
		"model": "<https://evil.example|click me>"}
	a.Annotations = map[string]string{"summary": "cost of <!here>\nNow: *0.00 USD* over 15m\u202egnp.exe"}
	a.Contributors = []string{"feature <!everyone> 1.00 USD"}
	a.Causes = nil // computed, never event text
	a.Link = "https://grafana.example/d/spend?team=%3C!channel%3E&model=a|b>c"
	return a
}

func TestSlackTextEscapesEventText(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	s := &Slack{URL: srv.URL + "/services/T/B/X"}
	if _, err := s.Notify(context.Background(), message(hostile())); err != nil {
		t.Fatal(err)
	}
	text := ":rotating_light: *[FIRING] team_spike* model=&lt;https://evil.example|click me&gt; team=&lt;!channel&gt; &amp; &lt;@U024BE7LH&gt;\n" +
		"cost of &lt;!here&gt; Now: *0.00 USD* over 15m\uFFFDgnp.exe\n" +
		"Now: *4.52 USD* over 15m vs baseline 1.50 USD, level 3.00 USD\n" +
		"Baseline: median of the same 15m 1 to 4 × 168h earlier; level max(median × 2, median + 3 × 1.4826 × MAD)\n" +
		"Since 2026-02-02T11:08:15Z\n" +
		"Top contributors: feature &lt;!everyone&gt; 1.00 USD\n" +
		"<https://grafana.example/d/spend?team=%3C!channel%3E&amp;model=a%7Cb%3Ec|Breakdown>"
	want, _ := json.Marshal(map[string]string{"text": text})
	if len(*got) != 1 || (*got)[0].body != string(want) {
		t.Errorf("received %+v\nwant %s", *got, want)
	}
}

func TestSlackTextDropsNonHTTPLinks(t *testing.T) {
	a := firing()
	a.Link = "javascript:alert(1)"
	if got := SlackText(message(a)); strings.Contains(got, "javascript") || strings.Contains(got, "Breakdown") {
		t.Errorf("text links a non-http URL:\n%s", got)
	}
}

func TestPagerDutyTextIsPlain(t *testing.T) {
	a := hostile()
	a.Annotations["summary"] = strings.Repeat("é", 600) // 1200 bytes: the cut falls inside a character
	ev := pdEventOf("0123456789abcdef0123456789abcdef", a)
	if s := ev.Payload.Summary; len(s) != 1024 || !utf8.ValidString(s) || s != strings.Repeat("é", 512) {
		t.Errorf("summary of %d bytes, valid UTF-8 %v", len(s), utf8.ValidString(s))
	}
	a = hostile()
	ev = pdEventOf("0123456789abcdef0123456789abcdef", a)
	if got, want := ev.Payload.Summary, "cost of <!here> Now: *0.00 USD* over 15m\uFFFDgnp.exe"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	if got, want := ev.Payload.CustomDetails["top_contributors"], "feature <!everyone> 1.00 USD"; got != want {
		t.Errorf("top_contributors = %q, want %q", got, want)
	}
}

// FuzzSlackText feeds event-chosen text into every field a Slack message shows: the text
// must never hold a '<' or '>' other than the breakdown link's, nor an '&' that does not start
// one of the three entities, nor a line break inside a field.
func FuzzSlackText(f *testing.F) {
	f.Add("<!channel>", "a&b", "x\ny", "https://grafana.example/d?a=1&b=<2>|3")
	f.Add("\u202e", "<@U1|x>", "&amp;", "http://x/ y")
	f.Fuzz(func(t *testing.T, team, model, summary, link string) {
		a := firing()
		a.Labels = map[string]string{"alertname": "team_spike", "team": team, "model": model}
		a.Annotations = map[string]string{"summary": summary}
		a.Contributors = []string{"model " + model}
		a.Link = link
		text := SlackText(message(a))
		if !utf8.ValidString(text) {
			t.Fatalf("text is not valid UTF-8: %q", text)
		}
		lines := strings.Split(text, "\n")
		body := lines
		if strings.HasPrefix(lines[len(lines)-1], "<http") {
			last := lines[len(lines)-1]
			if !strings.HasSuffix(last, "|Breakdown>") || strings.Count(last, "|") != 1 ||
				strings.Count(last, "<") != 1 || strings.Count(last, ">") != 1 {
				t.Fatalf("breakdown line %q", last)
			}
			body = lines[:len(lines)-1]
		}
		for _, l := range body {
			if strings.ContainsAny(l, "<>") {
				t.Fatalf("line %q holds an angle bracket", l)
			}
			for i := strings.IndexByte(l, '&'); i >= 0; i = next(l, i) {
				rest := l[i:]
				if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
					t.Fatalf("line %q holds a bare '&'", l)
				}
			}
		}
		if n := len(lines); n > 8 { // seven fields and the link
			t.Fatalf("%d lines, want at most 8:\n%s", n, text)
		}
	})
}

func next(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '&')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// FuzzPagerDutyEvent: whatever the text, the event is valid JSON of valid UTF-8 with a
// summary PagerDuty accepts and no control characters.
func FuzzPagerDutyEvent(f *testing.F) {
	f.Add("search", "cost is 4.52 USD", "gpt-4o")
	f.Add("\x00\x85\u202e", strings.Repeat("é", 600), "\xff")
	f.Fuzz(func(t *testing.T, team, summary, model string) {
		a := firing()
		a.Labels = map[string]string{"alertname": "team_spike", "team": team}
		a.Annotations = map[string]string{"summary": summary}
		a.Contributors = []string{"model " + model}
		ev := pdEventOf("0123456789abcdef0123456789abcdef", a)
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !utf8.Valid(data) {
			t.Fatalf("event is not valid UTF-8: %q", data)
		}
		s := ev.Payload.Summary
		if len(s) > pdMaxSummary || !utf8.ValidString(s) {
			t.Fatalf("summary %q: %d bytes", s, len(s))
		}
		for _, v := range append([]string{s, ev.Payload.Component}, mapValues(ev.Payload.CustomDetails)...) {
			for _, r := range v {
				if hidden(r) {
					t.Fatalf("%q holds %U", v, r)
				}
			}
		}
	})
}

func mapValues(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k, v)
	}
	return out
}

// TestUnreachableReceiverErrorHidesTheToken performs the attack of the issue: a Slack
// webhook whose host does not answer. Go's HTTP client returns a *url.Error quoting the
// whole URL, whose path is the token; the notifier's error must not show it.
func TestUnreachableReceiverErrorHidesTheToken(t *testing.T) {
	const token = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
	for name, n := range map[string]interface {
		Notify(context.Context, *Message) (bool, error)
	}{
		"slack":        &Slack{URL: "http://127.0.0.1:1/services/" + token},
		"webhook":      &Webhook{URL: "http://127.0.0.1:1/hook/" + token},
		"pagerduty":    &PagerDuty{URL: "http://127.0.0.1:1/v2/enqueue/" + token, RoutingKey: "0123456789abcdef0123456789abcdef"},
		"alertmanager": &Alertmanager{URL: "http://user:pw@127.0.0.1:1/" + token},
	} {
		retry, err := n.Notify(context.Background(), message(firing()))
		if err == nil || !retry {
			t.Fatalf("%s: retry %v err %v; want a retryable error", name, retry, err)
		}
		if msg := err.Error(); strings.Contains(msg, "XXXXXXXX") || strings.Contains(msg, "pw@") ||
			!strings.HasPrefix(msg, "post notification to http://127.0.0.1:1/…: Post \"http://127.0.0.1:1/…\": dial tcp 127.0.0.1:1: connect: connection refused") {
			t.Errorf("%s: error %q", name, msg)
		}
	}
}

func TestWebhookSendsItsBearerToken(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	for _, token := range []string{"s3cret", ""} {
		if _, err := (&Webhook{URL: srv.URL, BearerToken: token}).Notify(context.Background(), message(firing())); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(auth, ","), "Bearer s3cret,"; got != want {
		t.Errorf("Authorization headers %q, want %q", got, want)
	}
}

// TestEchoedSecretsAreMasked: a receiver that answers an error echoing what it was sent (the
// Authorization header, the PagerDuty event) must not put the bearer token or the routing key
// in the notifier's error.
func TestEchoedSecretsAreMasked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "rejected %s %.80s", r.Header.Get("Authorization"), body)
	}))
	t.Cleanup(srv.Close)
	_, err := (&Webhook{URL: srv.URL, BearerToken: "s3cret-bearer"}).Notify(context.Background(), message(firing()))
	if err == nil || strings.Contains(err.Error(), "s3cret-bearer") || !strings.Contains(err.Error(), "rejected Bearer xxxxx") {
		t.Errorf("webhook error %v", err)
	}
	_, err = (&PagerDuty{URL: srv.URL, RoutingKey: "0123456789abcdef0123456789abcdef"}).Notify(context.Background(), message(firing()))
	if err == nil || strings.Contains(err.Error(), "0123456789abcdef") || !strings.Contains(err.Error(), `rejected  {"routing_key":"xxxxx"`) {
		t.Errorf("pagerduty error %v", err)
	}
}
