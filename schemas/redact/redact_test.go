package redact

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestDSN(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := DSN(in); got != want {
			t.Errorf("DSN(%q) = %q, want %q", in, got, want)
		}
	}
	f("clickhouse://127.0.0.1:9000", "clickhouse://127.0.0.1:9000")
	f("clickhouse://writer:s3cret@ch:9440/tokenmeter?secure=true", "clickhouse://writer:xxxxx@ch:9440/tokenmeter?secure=true")
	f("clickhouse://reader@ch:9000", "clickhouse://reader@ch:9000")
	f("clickhouse://ch:9000?username=u&password=s3cret", "clickhouse://ch:9000?password=xxxxx&username=u")
	f("clickhouse://writer:s3cret@ch:notaport", "clickhouse://…")
	f("writer:s3cret@ch", "…")
	f("mailto:writer:s3cret", "…")
	f("http://[::1", "http://[::1")
	f("clickhouse://ch:notaport?password=s3cret", "clickhouse://…")
}

func TestURL(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
	f("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/…")
	f("https://user:pw@example.com:8443/hook?token=abc", "https://example.com:8443/…")
	f("https://hooks.slack.com/%zz/SECRET", "https://…")
	f("not a url SECRET", "…")
}

// TestURLErrorHidesTheSlackToken performs the attack: a Slack webhook whose host is down
// makes the HTTP client return a *url.Error quoting the whole URL, token included.
func TestURLErrorHidesTheSlackToken(t *testing.T) {
	hook := "http://127.0.0.1:1/services/T000/B000/XXXXSECRET"
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, hook, nil)
	_, err := http.DefaultClient.Do(req)
	if err == nil || !strings.Contains(err.Error(), "XXXXSECRET") {
		t.Fatalf("the client's error %v does not show the token; the test no longer performs the attack", err)
	}
	red := URLError(err, hook)
	if strings.Contains(red.Error(), "XXXXSECRET") || !strings.Contains(red.Error(), "http://127.0.0.1:1/…") {
		t.Errorf("redacted error = %q", red)
	}
	var ue *url.Error
	if !errors.As(red, &ue) {
		t.Errorf("errors.As no longer finds the *url.Error in %v", red)
	}
}

func TestDSNErrorHidesThePassword(t *testing.T) {
	dsn := "clickhouse://writer:s3cret@ch:notaport"
	_, err := url.Parse(dsn)
	if err == nil || !strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("url.Parse error %v does not show the password; the test no longer performs the attack", err)
	}
	if got, want := DSNError(err, dsn).Error(), `parse "clickhouse://…": invalid port ":notaport" after host`; got != want {
		t.Errorf("DSNError = %q, want %q", got, want)
	}
	if DSNError(nil, dsn) != nil {
		t.Error("DSNError(nil) is not nil")
	}
}

func FuzzDSN(f *testing.F) {
	f.Add("clickhouse://writer:s3cret@ch:9440/db?secure=true", "s3cret")
	f.Add("clickhouse://ch:9000?password=s3cret", "s3cret")
	f.Fuzz(func(t *testing.T, prefix, password string) {
		// prefix is a user name: with '/', '?', '#' or '@' the password would be a path, a
		// query or a fragment, which is no DSN.
		if len(password) < 4 || strings.ContainsAny(prefix, "/?#@") || strings.Contains(prefix, password) || strings.Contains(Mask, password) {
			return
		}
		dsn := "clickhouse://" + prefix + ":" + url.PathEscape(password) + "@ch:9000"
		got := DSN(dsn)
		if strings.Contains(got, ":"+url.PathEscape(password)+"@") || strings.Contains(got, ":"+password+"@") {
			t.Errorf("DSN(%q) = %q shows the password", dsn, got)
		}
	})
}
