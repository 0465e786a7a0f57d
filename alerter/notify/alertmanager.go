package notify

import (
	"context"
	"net/http"
	"time"
)

// Alertmanager pushes alerts to an Alertmanager's POST /api/v2/alerts, leaving grouping,
// silencing and routing to it. A firing alert carries endsAt = ValidUntil, so the
// Alertmanager keeps it firing until the alerter's next repeat; a resolved one carries the
// time it resolved. Each alert's facts are annotations (Alert.AllAnnotations).
type Alertmanager struct {
	URL    string // base URL, e.g. http://alertmanager:9093
	Client *http.Client
}

type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Notify posts m's alerts.
func (a *Alertmanager) Notify(ctx context.Context, m *Message) (bool, error) {
	alerts := make([]amAlert, 0, len(m.Alerts))
	for _, al := range m.Alerts {
		end := al.ValidUntil
		if al.Status == StatusResolved {
			end = al.EndsAt
		}
		alerts = append(alerts, amAlert{Labels: orEmpty(al.Labels), Annotations: al.AllAnnotations(),
			StartsAt: al.StartsAt.UTC(), EndsAt: end.UTC(), GeneratorURL: al.Link})
	}
	return postJSON(ctx, a.Client, a.URL+"/api/v2/alerts", alerts, nil)
}
