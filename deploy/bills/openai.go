package bills

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// OpenAI fetches an organization's reports from OpenAI's Usage API
// (/v1/organization/usage/completions and /embeddings) and Costs API (/v1/organization/costs)
// with an admin key, in daily buckets grouped by model, project and API key.
type OpenAI struct {
	Client
	// BaseURL is https://api.openai.com unless set (tests point it at a fake server).
	BaseURL string
	// AdminKey is sent as a bearer token; it is never logged or put in an error.
	AdminKey string
}

const openAIBaseURL = "https://api.openai.com"

// openAIPage is one page of the Usage and Costs APIs.
type openAIPage struct {
	Data []struct {
		StartTime int64          `json:"start_time"`
		EndTime   int64          `json:"end_time"`
		Results   []openAIResult `json:"results"`
		// The API reference names the list "result"; its examples, and the API, "results".
		Result []openAIResult `json:"result"`
	} `json:"data"`
	HasMore  bool    `json:"has_more"`
	NextPage *string `json:"next_page"`
}

type openAIResult struct {
	Object            string  `json:"object"`
	InputTokens       uint64  `json:"input_tokens"`
	InputCachedTokens uint64  `json:"input_cached_tokens"`
	OutputTokens      uint64  `json:"output_tokens"`
	ProjectID         *string `json:"project_id"`
	APIKeyID          *string `json:"api_key_id"`
	Model             *string `json:"model"`
	Batch             *bool   `json:"batch"`
	ServiceTier       *string `json:"service_tier"`
	LineItem          *string `json:"line_item"`
	Amount            *struct {
		Value    json.Number `json:"value"`
		Currency string      `json:"currency"`
	} `json:"amount"`
}

// decodeOpenAIPage decodes one page into rows of source. The page's buckets must be days.
func decodeOpenAIPage(data []byte, source string) ([]Row, openAIPage, error) {
	var p openAIPage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, p, fmt.Errorf("decode: %w", err)
	}
	var rows []Row
	for _, b := range p.Data {
		start := time.Unix(b.StartTime, 0).UTC()
		if !start.Equal(day(start)) || b.EndTime-b.StartTime != 86400 {
			return nil, p, fmt.Errorf("bucket %d .. %d is not one UTC day", b.StartTime, b.EndTime)
		}
		for _, res := range append(b.Results, b.Result...) {
			base := Row{
				Day: start, Source: source, Provider: "openai",
				Model: str(res.Model), Project: str(res.ProjectID), APIKey: str(res.APIKeyID), ServiceTier: str(res.ServiceTier),
			}
			if res.Batch != nil && *res.Batch {
				base.ServiceTier = "batch"
			}
			switch source {
			case SourceOpenAICosts:
				if res.Amount == nil {
					return nil, p, fmt.Errorf("bucket %d: a cost result without amount", b.StartTime)
				}
				if !strings.EqualFold(res.Amount.Currency, "usd") {
					return nil, p, fmt.Errorf("bucket %d: amount in %q, want usd", b.StartTime, res.Amount.Currency)
				}
				cost, err := parseUSD(res.Amount.Value.String())
				if err != nil {
					return nil, p, fmt.Errorf("bucket %d: %w", b.StartTime, err)
				}
				base.LineItem = str(res.LineItem)
				base.Model, base.TokenClass = openAILineItem(base.LineItem)
				base.CostUSD = cost
				rows = append(rows, base)
			default:
				if res.InputCachedTokens > res.InputTokens {
					return nil, p, fmt.Errorf("bucket %d: input_cached_tokens (%d) exceed input_tokens (%d), which includes them", b.StartTime, res.InputCachedTokens, res.InputTokens)
				}
				for _, c := range []struct {
					class string
					n     uint64
				}{{InputUncached, res.InputTokens - res.InputCachedTokens}, {InputCached, res.InputCachedTokens}, {Output, res.OutputTokens}} {
					if c.n > 0 {
						r := base
						r.TokenClass, r.Tokens = c.class, c.n
						rows = append(rows, r)
					}
				}
			}
		}
	}
	return rows, p, nil
}

// openAILineItem reads the model and the token class out of a Costs API line item
// ("gpt-4o-2024-08-06, input"). A line item of another form keeps both empty.
func openAILineItem(item string) (model, class string) {
	i := strings.LastIndex(item, ", ")
	if i < 0 {
		return "", ""
	}
	model = item[:i]
	switch item[i+2:] {
	case "input":
		class = InputUncached
	case "cached input":
		class = InputCached
	case "output":
		class = Output
	}
	return model, class
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Fetch returns the reports of r: completions and embeddings usage, and costs.
func (o *OpenAI) Fetch(ctx context.Context, r Range) (Report, error) {
	var rep Report
	for _, e := range []struct {
		source, path string
		groupBy      []string
	}{
		{SourceOpenAICompletions, "/v1/organization/usage/completions", []string{"model", "project_id", "api_key_id", "batch"}},
		{SourceOpenAIEmbeddings, "/v1/organization/usage/embeddings", []string{"model", "project_id", "api_key_id"}},
		{SourceOpenAICosts, "/v1/organization/costs", []string{"project_id", "line_item"}},
	} {
		q := url.Values{
			"start_time":   {strconv.FormatInt(r.From.Unix(), 10)},
			"end_time":     {strconv.FormatInt(r.To.Unix(), 10)},
			"bucket_width": {"1d"},
			"group_by":     e.groupBy,
			"limit":        {"31"},
		}
		rows, err := o.pages(ctx, e.path, q, e.source)
		if err != nil {
			return Report{}, fmt.Errorf("openai %s: %w", e.source, err)
		}
		rep.Add(Report{Periods: periods(e.source, r, o.now()), Rows: rows})
	}
	return rep, nil
}

func (o *OpenAI) pages(ctx context.Context, path string, q url.Values, source string) ([]Row, error) {
	base := o.BaseURL
	if base == "" {
		base = openAIBaseURL
	}
	return o.Client.pages(ctx, base, path, q, http.Header{"Authorization": {"Bearer " + o.AdminKey}}, func(body []byte) ([]Row, string, error) {
		rows, p, err := decodeOpenAIPage(body, source)
		if err != nil {
			return nil, "", err
		}
		next, err := nextPage(p.HasMore, p.NextPage)
		return rows, next, err
	})
}
