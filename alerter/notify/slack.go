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

// SlackText is the message text (Slack mrkdwn). Everything that comes from events or rules
// (labels such as team, model and feature names, the summary, the contributors) is escaped
// as Slack asks — &, < and > as HTML entities — so that a team named "<!channel>" cannot ping
// a channel, mention anyone or make a link, and control characters cannot start a line that
// looks like one of ours.
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
		fmt.Fprintf(&b, "%s *[%s] %s*", icon, strings.ToUpper(a.Status), slackEscape(a.Labels["alertname"]))
		for _, k := range sortedKeys(a.Labels) {
			if k != "alertname" && k != "severity" {
				fmt.Fprintf(&b, " %s=%s", slackEscape(k), slackEscape(a.Labels[k]))
			}
		}
		if s := a.Annotations["summary"]; s != "" {
			fmt.Fprintf(&b, "\n%s", slackEscape(s))
		}
		fmt.Fprintf(&b, "\nNow: *%s* over %s vs baseline %s", slackEscape(a.Value), slackEscape(a.Window), slackEscape(a.Baseline))
		if a.Level != "" {
			fmt.Fprintf(&b, ", level %s", slackEscape(a.Level))
		}
		if a.BaselineMethod != "" {
			fmt.Fprintf(&b, "\nBaseline: %s", slackEscape(a.BaselineMethod))
		}
		if a.Status == StatusResolved {
			fmt.Fprintf(&b, "\nFiring from %s to %s", a.StartsAt.UTC().Format(time.RFC3339), a.EndsAt.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(&b, "\nSince %s", a.StartsAt.UTC().Format(time.RFC3339))
		}
		if len(a.Contributors) > 0 {
			c := make([]string, len(a.Contributors))
			for i, s := range a.Contributors {
				c[i] = slackEscape(s)
			}
			fmt.Fprintf(&b, "\nTop contributors: %s", strings.Join(c, "; "))
		}
		if len(a.Causes) > 0 {
			c := make([]string, len(a.Causes))
			for i, s := range a.Causes {
				c[i] = slackEscape(s)
			}
			fmt.Fprintf(&b, "\nCauses: %s", strings.Join(c, "; "))
		}
		if link := slackLink(a.Link); link != "" {
			fmt.Fprintf(&b, "\n<%s|Breakdown>", link)
		}
	}
	return b.String()
}

// slackEscaper escapes the three characters Slack's formatting reference says to escape in
// text: & < >. Nothing else is decoded by Slack, so nothing else is encoded.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackEscape makes s plain text in mrkdwn: printable (see plain) and escaped.
func slackEscape(s string) string { return slackEscaper.Replace(plain(s)) }

// slackLink returns the link target for <target|text>, or "" when link is not an http(s) URL.
// Inside the angle brackets '|' would end the target and '>' the link, so they are
// percent-encoded along with '<' and spaces; '&' is escaped as &amp; as Slack asks.
func slackLink(link string) string {
	if !strings.HasPrefix(link, "https://") && !strings.HasPrefix(link, "http://") {
		return ""
	}
	link = strings.NewReplacer("|", "%7C", "<", "%3C", ">", "%3E", " ", "%20").Replace(plain(link))
	return strings.ReplaceAll(link, "&", "&amp;")
}
