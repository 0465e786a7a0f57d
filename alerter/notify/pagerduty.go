package notify

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// PagerDuty sends one Events API v2 event per alert: trigger while firing, resolve once
// resolved. The dedup_key is the alert's fingerprint, stable across restarts, so a repeated
// trigger updates the same incident and the resolve closes it.
type PagerDuty struct {
	URL, RoutingKey string
	Client          *http.Client
}

type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"`
	DedupKey    string     `json:"dedup_key"`
	Payload     *pdPayload `json:"payload,omitempty"`
	Links       []pdLink   `json:"links,omitempty"`
}

type pdPayload struct {
	Summary       string            `json:"summary"`
	Source        string            `json:"source"`
	Severity      string            `json:"severity"`
	Timestamp     string            `json:"timestamp"`
	Component     string            `json:"component"`
	CustomDetails map[string]string `json:"custom_details"`
}

type pdLink struct {
	Href string `json:"href"`
	Text string `json:"text"`
}

// Notify sends every alert of m; it stops at the first failure, which a retry repeats from
// the start (PagerDuty de-duplicates by dedup_key).
func (p *PagerDuty) Notify(ctx context.Context, m *Message) (bool, error) {
	var errs []error
	retry := false
	for _, a := range m.Alerts {
		r, err := postJSON(ctx, p.Client, p.URL, pdEventOf(p.RoutingKey, a), nil)
		if err != nil {
			errs = append(errs, redact.SecretError(err, p.RoutingKey))
			retry = retry || r
			break
		}
	}
	return retry, errors.Join(errs...)
}

// pdMaxSummary is the longest summary PagerDuty accepts, in bytes.
const pdMaxSummary = 1024

// pdEventOf is the event for one alert. Text from events (labels, summary, contributors)
// goes through plain: PagerDuty shows the summary as the incident's title, where a line
// break or a bidirectional override would disguise it.
func pdEventOf(routingKey string, a Alert) pdEvent {
	ev := pdEvent{RoutingKey: routingKey, EventAction: "trigger", DedupKey: a.Fingerprint}
	if a.Status == StatusResolved {
		ev.EventAction = "resolve"
		return ev
	}
	details := map[string]string{"since": a.StartsAt.UTC().Format(time.RFC3339)}
	for k, v := range a.Labels {
		details[plain(k)] = plain(v)
	}
	for k, v := range a.AllAnnotations() {
		if k != "summary" {
			details[plain(k)] = plain(v)
		}
	}
	ev.Payload = &pdPayload{Summary: truncate(plain(a.Annotations["summary"]), pdMaxSummary), Source: "tokenmeter",
		Severity: pdSeverity(a.Severity), Timestamp: a.StartsAt.UTC().Format(time.RFC3339),
		Component: plain(a.Labels["alertname"]), CustomDetails: details}
	if strings.HasPrefix(a.Link, "https://") || strings.HasPrefix(a.Link, "http://") {
		ev.Links = []pdLink{{Href: plain(a.Link), Text: "Breakdown"}}
	}
	return ev
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// pdSeverity maps a rule severity to one of PagerDuty's four.
func pdSeverity(s string) string {
	switch s {
	case "page", "critical":
		return "critical"
	case "error":
		return "error"
	case "warning":
		return "warning"
	}
	return "info"
}
