// Package redact keeps secrets out of error messages and logs: the password of a DSN, the
// path and query of a webhook URL (a Slack incoming webhook's path is its token), and those
// same strings where an error quotes them — Go's *url.Error carries the whole URL it failed
// on, and url.Parse's error quotes its input.
package redact

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
)

// Mask replaces a secret in what DSN shows.
const Mask = "xxxxx"

// secretParams are query parameters whose values are secrets in the DSNs and URLs we handle.
var secretParams = []string{"password", "secret", "token", "key", "api_key", "access_token", "sig", "signature"}

// DSN returns dsn with its password and secret query parameters replaced by Mask. A DSN that
// does not parse is shown whole when it holds neither user information ('@') nor a secret
// parameter's name, else as its scheme and "…".
func DSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil && !strings.Contains(dsn, "@") && !mentionsSecretParam(dsn) {
		return dsn
	}
	if err != nil || u.Opaque != "" {
		return schemeOnly(dsn)
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), Mask)
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if isSecretParam(k) {
				q.Set(k, Mask)
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// URL returns the scheme and host of a URL, without user information, path or query:
// "https://hooks.slack.com/…". A URL that does not parse is shown as its scheme and "…".
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return schemeOnly(raw)
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// DSNError returns err with every occurrence of dsn in its message replaced by DSN(dsn). The
// original error stays reachable through errors.Is and errors.As.
func DSNError(err error, dsn string) error { return replace(err, dsn, DSN(dsn)) }

// URLError returns err with every occurrence of raw in its message replaced by URL(raw).
func URLError(err error, raw string) error { return replace(err, raw, URL(raw)) }

// SecretError returns err with every occurrence of secret (a token, a routing key) in its
// message replaced by Mask: a server that echoes what it was sent must not put the secret in
// our logs.
func SecretError(err error, secret string) error { return replace(err, secret, Mask) }

// replace hides secret in err's message. The URL of a *url.Error in err's chain is hidden
// too: the HTTP client quotes the URL it was given with its password already replaced by
// "***", which no longer contains secret.
func replace(err error, secret, shown string) error {
	if err == nil || secret == "" || secret == shown {
		return err
	}
	msg := err.Error()
	out := msg
	hide := []string{secret}
	var ue *url.Error
	if errors.As(err, &ue) && ue.URL != "" {
		hide = append(hide, ue.URL)
	}
	for _, h := range hide {
		quoted := strconv.Quote(h)
		out = strings.ReplaceAll(out, quoted[1:len(quoted)-1], shown)
		out = strings.ReplaceAll(out, h, shown)
	}
	if out == msg {
		return err
	}
	return &redacted{msg: out, err: err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

func schemeOnly(s string) string {
	if i := strings.Index(s, "://"); i > 0 && !strings.ContainsAny(s[:i], "@:/?#") {
		return s[:i+3] + "…"
	}
	return "…"
}

func mentionsSecretParam(s string) bool {
	s = strings.ToLower(s)
	for _, p := range secretParams {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func isSecretParam(k string) bool {
	k = strings.ToLower(k)
	for _, s := range secretParams {
		if k == s || strings.HasSuffix(k, "_"+s) {
			return true
		}
	}
	return false
}
