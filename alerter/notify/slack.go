package notify

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Slack posts to an incoming webhook: one message per notification, with the numbers that
// let on-call judge it without opening anything — current value against the baseline, since
// when, the top contributors and a link to the breakdown.
type Slack struct {
	URL, Channel string
	Client       *http.Client
}

type slackPayload struct {
	Channel string `json:"channel,omitempty"`
	Text    string `json:"text"`
}

// Notify posts m.
func (s *Slack) Notify(ctx context.Context, m *Message) (bool, error) {
	return postJSON(ctx, s.Client, s.URL, slackPayload{Channel: s.Channel, Text: SlackText(m)}, nil)
}

// SlackText is the message text (Slack mrkdwn).
func SlackText(m *Message) string {
	var b strings.Builder
	for i, a := range m.Alerts {
		if i > 0 {
			b.WriteString("\n\n")
		}
		icon := ":rotating_light:"
		if a.Status == StatusResolved {
			icon = ":white_check_mark:"
		}
		fmt.Fprintf(&b, "%s *[%s] %s*", icon, strings.ToUpper(a.Status), a.Labels["alertname"])
		for _, k := range sortedKeys(a.Labels) {
			if k != "alertname" && k != "severity" {
				fmt.Fprintf(&b, " %s=%s", k, a.Labels[k])
			}
		}
		if s := a.Annotations["summary"]; s != "" {
			fmt.Fprintf(&b, "\n%s", s)
		}
		fmt.Fprintf(&b, "\nNow: *%s* over %s vs baseline %s", a.Value, a.Window, a.Baseline)
		if a.Status == StatusResolved {
			fmt.Fprintf(&b, "\nFiring from %s to %s", a.StartsAt.UTC().Format(time.RFC3339), a.EndsAt.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(&b, "\nSince %s", a.StartsAt.UTC().Format(time.RFC3339))
		}
		if len(a.Contributors) > 0 {
			fmt.Fprintf(&b, "\nTop contributors: %s", strings.Join(a.Contributors, ", "))
		}
		if a.Link != "" {
			fmt.Fprintf(&b, "\n<%s|Breakdown>", a.Link)
		}
	}
	return b.String()
}
