package notify

import (
	"context"
	"net/http"
	"time"

	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// Webhook posts the Alertmanager v4 webhook payload, so receivers written for Alertmanager
// work unchanged; each alert's facts (value, level, baseline and how it was computed,
// window, top contributors) are annotations (Alert.AllAnnotations). When BearerToken is set, each request carries it as
// "Authorization: Bearer <token>".
type Webhook struct {
	URL, BearerToken string
	Client           *http.Client
}

type webhookPayload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []webhookAlert    `json:"alerts"`
}

type webhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Notify posts m.
func (w *Webhook) Notify(ctx context.Context, m *Message) (bool, error) {
	p := webhookPayload{
		Version: "4", GroupKey: m.GroupKey, Status: m.Status(), Receiver: m.Receiver,
		GroupLabels: orEmpty(m.GroupLabels), CommonLabels: m.CommonLabels(), CommonAnnotations: m.CommonAnnotations(),
		ExternalURL: m.ExternalURL, Alerts: []webhookAlert{},
	}
	for _, a := range m.Alerts {
		p.Alerts = append(p.Alerts, webhookAlert{
			Status: a.Status, Labels: orEmpty(a.Labels), Annotations: a.AllAnnotations(),
			StartsAt: a.StartsAt.UTC(), EndsAt: a.EndsAt.UTC(), GeneratorURL: a.Link, Fingerprint: a.Fingerprint,
		})
	}
	var header http.Header
	if w.BearerToken != "" {
		header = http.Header{"Authorization": {"Bearer " + w.BearerToken}}
	}
	retry, err := postJSON(ctx, w.Client, w.URL, p, header)
	return retry, redact.SecretError(err, w.BearerToken)
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
