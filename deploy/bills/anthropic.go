package bills

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Anthropic fetches an organization's usage report (/v1/organizations/usage_report/messages)
// and cost report (/v1/organizations/cost_report) from Anthropic's Admin API, in daily
// buckets grouped by model, workspace and API key (usage) or workspace and description
// (cost: the grouping that carries model and token type).
type Anthropic struct {
	Client
	// BaseURL is https://api.anthropic.com unless set.
	BaseURL string
	// AdminKey (sk-ant-admin…) is sent as x-api-key; it is never logged or put in an error.
	AdminKey string
}

const (
	anthropicBaseURL = "https://api.anthropic.com"
	anthropicVersion = "2023-06-01"
)

type anthropicPage struct {
	Data []struct {
		StartingAt time.Time         `json:"starting_at"`
		EndingAt   time.Time         `json:"ending_at"`
		Results    []anthropicResult `json:"results"`
	} `json:"data"`
	HasMore  bool    `json:"has_more"`
	NextPage *string `json:"next_page"`
}

type anthropicResult struct {
	UncachedInputTokens  uint64 `json:"uncached_input_tokens"`
	CacheReadInputTokens uint64 `json:"cache_read_input_tokens"`
	CacheCreation        struct {
		Ephemeral1h uint64 `json:"ephemeral_1h_input_tokens"`
		Ephemeral5m uint64 `json:"ephemeral_5m_input_tokens"`
	} `json:"cache_creation"`
	OutputTokens uint64  `json:"output_tokens"`
	Model        *string `json:"model"`
	WorkspaceID  *string `json:"workspace_id"`
	APIKeyID     *string `json:"api_key_id"`
	ServiceTier  *string `json:"service_tier"`
	// Cost report fields.
	Amount      *string `json:"amount"` // in the currency's lowest unit (cents), a decimal string
	Currency    string  `json:"currency"`
	Description *string `json:"description"`
	TokenType   *string `json:"token_type"`
}

// anthropicTokenTypes maps the cost report's token_type to a token class.
var anthropicTokenTypes = map[string]string{
	"uncached_input_tokens":                    InputUncached,
	"cache_read_input_tokens":                  InputCached,
	"cache_creation.ephemeral_5m_input_tokens": CacheWrite5m,
	"cache_creation.ephemeral_1h_input_tokens": CacheWrite1h,
	"output_tokens":                            Output,
}

// decodeAnthropicPage decodes one page into rows of source. The buckets must be days.
func decodeAnthropicPage(data []byte, source string) ([]Row, anthropicPage, error) {
	var p anthropicPage
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, p, fmt.Errorf("decode: %w", err)
	}
	var rows []Row
	for _, b := range p.Data {
		start := b.StartingAt.UTC()
		if !start.Equal(day(start)) || !b.EndingAt.Equal(start.AddDate(0, 0, 1)) {
			return nil, p, fmt.Errorf("bucket %s .. %s is not one UTC day", b.StartingAt.Format(time.RFC3339), b.EndingAt.Format(time.RFC3339))
		}
		for _, res := range b.Results {
			base := Row{
				Day: start, Source: source, Provider: "anthropic",
				Model: str(res.Model), Project: str(res.WorkspaceID), APIKey: str(res.APIKeyID), ServiceTier: str(res.ServiceTier),
			}
			if source == SourceAnthropicCosts {
				if res.Amount == nil {
					return nil, p, fmt.Errorf("bucket %s: a cost result without amount", start.Format(time.DateOnly))
				}
				if res.Currency != "" && !strings.EqualFold(res.Currency, "USD") {
					return nil, p, fmt.Errorf("bucket %s: amount in %q, want USD", start.Format(time.DateOnly), res.Currency)
				}
				cents, err := decimal.NewFromString(*res.Amount)
				if err != nil {
					return nil, p, fmt.Errorf("bucket %s: amount %q: not a decimal number", start.Format(time.DateOnly), *res.Amount)
				}
				base.CostUSD = cents.Shift(-2).Round(usdScale)
				base.LineItem = str(res.Description)
				base.TokenClass = anthropicTokenTypes[str(res.TokenType)]
				rows = append(rows, base)
				continue
			}
			for _, c := range []struct {
				class string
				n     uint64
			}{
				{InputUncached, res.UncachedInputTokens}, {InputCached, res.CacheReadInputTokens},
				{CacheWrite5m, res.CacheCreation.Ephemeral5m}, {CacheWrite1h, res.CacheCreation.Ephemeral1h},
				{Output, res.OutputTokens},
			} {
				if c.n > 0 {
					r := base
					r.TokenClass, r.Tokens = c.class, c.n
					rows = append(rows, r)
				}
			}
		}
	}
	return rows, p, nil
}

// Fetch returns the usage and cost reports of r.
func (a *Anthropic) Fetch(ctx context.Context, r Range) (Report, error) {
	var rep Report
	for _, e := range []struct {
		source, path string
		groupBy      []string
	}{
		{SourceAnthropicMessages, "/v1/organizations/usage_report/messages", []string{"model", "workspace_id", "api_key_id", "service_tier"}},
		{SourceAnthropicCosts, "/v1/organizations/cost_report", []string{"workspace_id", "description"}},
	} {
		q := url.Values{
			"starting_at":  {r.From.UTC().Format(time.RFC3339)},
			"ending_at":    {r.To.UTC().Format(time.RFC3339)},
			"bucket_width": {"1d"},
			"group_by[]":   e.groupBy,
			"limit":        {"31"},
		}
		rows, err := a.pages(ctx, e.path, q, e.source)
		if err != nil {
			return Report{}, fmt.Errorf("anthropic %s: %w", e.source, err)
		}
		rep.Add(Report{Periods: periods(e.source, r, a.now()), Rows: rows})
	}
	return rep, nil
}

func (a *Anthropic) pages(ctx context.Context, path string, q url.Values, source string) ([]Row, error) {
	base := a.BaseURL
	if base == "" {
		base = anthropicBaseURL
	}
	return a.Client.pages(ctx, base, path, q, http.Header{"X-Api-Key": {a.AdminKey}, "Anthropic-Version": {anthropicVersion}}, func(body []byte) ([]Row, string, error) {
		rows, p, err := decodeAnthropicPage(body, source)
		if err != nil {
			return nil, "", err
		}
		next, err := nextPage(p.HasMore, p.NextPage)
		return rows, next, err
	})
}
