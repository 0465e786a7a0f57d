// Package notify sends alert notifications, one file per integration: a generic webhook with
// the Alertmanager v4 payload (webhook.go), Slack incoming webhooks (slack.go), PagerDuty
// Events API v2 (pagerduty.go) and an Alertmanager's /api/v2/alerts (alertmanager.go).
//
// Every notifier has one method, Notify, which also says whether a failure is worth a retry:
// network errors, 429 and 5xx answers are; any other 4xx means the request itself is wrong
// and sending it again would fail the same way.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// Status of an alert or of a notification.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Alert is one alert as notifiers see it.
type Alert struct {
	Status      string
	Labels      map[string]string
	Annotations map[string]string
	Fingerprint string
	StartsAt    time.Time
	// EndsAt is when a resolved alert resolved; zero while firing.
	EndsAt time.Time
	// ValidUntil tells an Alertmanager how long a firing alert stays firing without news.
	ValidUntil time.Time
	// The numbers, already formatted with their unit ("152.30 USD", "1200 requests"): the
	// value over the window, the level it had to exceed and the baseline it is judged
	// against.
	Value, Level, Baseline string
	// BaselineMethod says how the baseline and the level were computed.
	BaselineMethod string
	// Window is what Value sums ("15m", "calendar day").
	Window string
	// Contributors are the top contributors with their share of the increase
	// ("model gpt-4o 5.40 USD (+5.33 USD, 98.7% of the increase)").
	Contributors []string
	// Causes split a cost spike's increase into volume, size, mix and cache, each with its
	// exact share ("volume +4.10 USD (75.9% of the increase): 50 → 190 calls").
	Causes   []string
	Link     string
	Severity string
}

// Annotation names under which every receiver gets an alert's facts: the webhook and the
// Alertmanager as annotations, PagerDuty as custom details, Slack as lines of text.
const (
	AnnotationValue           = "value"
	AnnotationLevel           = "level"
	AnnotationBaseline        = "baseline"
	AnnotationBaselineMethod  = "baseline_method"
	AnnotationWindow          = "window"
	AnnotationTopContributors = "top_contributors"
	AnnotationCauses          = "causes"
)

// AllAnnotations is the alert's annotations with its facts added: value, level, baseline,
// baseline_method, window, top_contributors and causes (lists joined with "; "), each only
// when set and not already an annotation.
func (a *Alert) AllAnnotations() map[string]string {
	out := make(map[string]string, len(a.Annotations)+7)
	for k, v := range a.Annotations {
		out[k] = v
	}
	for _, f := range [...]struct{ k, v string }{
		{AnnotationValue, a.Value}, {AnnotationLevel, a.Level}, {AnnotationBaseline, a.Baseline},
		{AnnotationBaselineMethod, a.BaselineMethod}, {AnnotationWindow, a.Window},
		{AnnotationTopContributors, strings.Join(a.Contributors, "; ")},
		{AnnotationCauses, strings.Join(a.Causes, "; ")},
	} {
		if _, ok := out[f.k]; !ok && f.v != "" {
			out[f.k] = f.v
		}
	}
	return out
}

// Message is one notification: the alerts of one group for one receiver.
type Message struct {
	Receiver    string
	GroupKey    string
	GroupLabels map[string]string
	Alerts      []Alert
	ExternalURL string
}

// Status is firing when any alert fires.
func (m *Message) Status() string {
	for _, a := range m.Alerts {
		if a.Status == StatusFiring {
			return StatusFiring
		}
	}
	return StatusResolved
}

// CommonLabels are the labels every alert of the message shares.
func (m *Message) CommonLabels() map[string]string {
	return common(m.Alerts, func(a Alert) map[string]string { return a.Labels })
}

// CommonAnnotations are the annotations, facts included (Alert.AllAnnotations), that every
// alert of the message shares.
func (m *Message) CommonAnnotations() map[string]string {
	return common(m.Alerts, func(a Alert) map[string]string { return a.AllAnnotations() })
}

func common(alerts []Alert, get func(Alert) map[string]string) map[string]string {
	out := map[string]string{}
	if len(alerts) == 0 {
		return out
	}
	for k, v := range get(alerts[0]) {
		out[k] = v
	}
	for _, a := range alerts[1:] {
		m := get(a)
		for k, v := range out {
			if m[k] != v {
				delete(out, k)
			}
		}
	}
	return out
}

// postJSON posts body as JSON and classifies the outcome.
func postJSON(ctx context.Context, client *http.Client, url string, body any, header http.Header) (retry bool, err error) {
	data, err := json.Marshal(body)
	if err != nil {
		return false, fmt.Errorf("encode notification for %s: %w", redact.URL(url), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return false, fmt.Errorf("build request to %s: %w", redact.URL(url), redact.URLError(err, url))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tokenmeter-alerter")
	for k, v := range header {
		req.Header[k] = v
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// The client's *url.Error quotes the whole URL, whose path may be the token.
		return true, fmt.Errorf("post notification to %s: %w", redact.URL(url), redact.URLError(err, url))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("post notification to %s: %s: %s", redact.URL(url), resp.Status, bytes.TrimSpace(msg))
	default:
		return false, fmt.Errorf("post notification to %s: %s (not retried): %s", redact.URL(url), resp.Status, bytes.TrimSpace(msg))
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// plain makes text taken from events safe to show on one line: tabs and line breaks become
// spaces, and other control characters, bidirectional overrides, zero-width characters and
// invalid UTF-8 become U+FFFD, so that a team or model name can neither start a line that
// reads like ours nor reorder or hide what is shown around it.
func plain(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || hidden(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029':
			return ' '
		case r == utf8.RuneError || hidden(r):
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, string(utf8.RuneError)))
}

// hidden reports control characters and the invisible characters that change how the text
// around them reads.
func hidden(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r < 0xa0: // C0, DEL, C1
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2060 && r <= 0x2069,
		r == 0x2028, r == 0x2029, r == 0x061c, r == 0xfeff:
		return true
	}
	return false
}
