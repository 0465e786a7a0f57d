package notify

import (
	"context"
	"errors"
	"net/http"
	"time"
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
		ev := pdEvent{RoutingKey: p.RoutingKey, EventAction: "trigger", DedupKey: a.Fingerprint}
		if a.Status == StatusResolved {
			ev.EventAction = "resolve"
		} else {
			details := map[string]string{"value": a.Value, "baseline": a.Baseline, "window": a.Window,
				"since": a.StartsAt.UTC().Format(time.RFC3339)}
			for k, v := range a.Labels {
				details[k] = v
			}
			if len(a.Contributors) > 0 {
				details["top_contributors"] = joinComma(a.Contributors)
			}
			summary := a.Annotations["summary"]
			if len(summary) > 1024 {
				summary = summary[:1024]
			}
			ev.Payload = &pdPayload{Summary: summary, Source: "tokenmeter", Severity: pdSeverity(a.Severity),
				Timestamp: a.StartsAt.UTC().Format(time.RFC3339), Component: a.Labels["alertname"], CustomDetails: details}
			if a.Link != "" {
				ev.Links = []pdLink{{Href: a.Link, Text: "Breakdown"}}
			}
		}
		r, err := postJSON(ctx, p.Client, p.URL, ev, nil)
		if err != nil {
			errs = append(errs, err)
			retry = retry || r
			break
		}
	}
	return retry, errors.Join(errs...)
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

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ", "
		}
		out += v
	}
	return out
}
