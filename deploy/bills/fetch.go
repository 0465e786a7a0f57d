package bills

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client is what the report fetchers share: the HTTP client, the clock and the retry policy.
type Client struct {
	HTTP *http.Client
	// Now tells the time (partial days); Sleep waits before a retry. Both default to the real
	// clock; tests inject them.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Retries is how many times a request answered 429 or 5xx is sent again (default 5),
	// after the Retry-After the provider asks for, or 1s, 2s, 4s … without one; MaxWait caps
	// one wait (default 2 min).
	Retries int
	MaxWait time.Duration
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) retries() int {
	if c.Retries > 0 {
		return c.Retries
	}
	return 5
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// maxPages bounds the pages of one report, against a server that never says has_more=false.
const maxPages = 10000

// decodePage decodes one page of a report: its rows, and the cursor of the next page ("" on
// the last).
type decodePage func(body []byte) (rows []Row, next string, err error)

// pages GETs base+path with the query q and then every next page (q's "page" set to the
// cursor the previous page gave), and returns the rows of all.
func (c *Client) pages(ctx context.Context, base, path string, q url.Values, header http.Header, decode decodePage) ([]Row, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/") + path)
	if err != nil {
		return nil, fmt.Errorf("base URL: %w", err)
	}
	var rows []Row
	for n := 1; ; n++ {
		if n > maxPages {
			return nil, fmt.Errorf("more than %d pages", maxPages)
		}
		u.RawQuery = q.Encode()
		body, err := c.get(ctx, u, header)
		if err != nil {
			return nil, err
		}
		page, next, err := decode(body)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", n, err)
		}
		rows = append(rows, page...)
		if next == "" {
			return rows, nil
		}
		if next == q.Get("page") {
			return nil, fmt.Errorf("page %d: next_page repeats the cursor of the page", n)
		}
		q.Set("page", next)
	}
}

// nextPage returns the cursor of the next page, or an error when has_more comes without one.
func nextPage(hasMore bool, next *string) (string, error) {
	if !hasMore {
		return "", nil
	}
	if next == nil || *next == "" {
		return "", errors.New("has_more without a next_page")
	}
	return *next, nil
}

// maxBody bounds one page of a report.
const maxBody = 64 << 20

// get sends GET u with the headers (the credentials among them) and returns the body of a
// 200 answer, retrying 429 and 5xx answers. Errors name the URL without its query and never
// a header.
func (c *Client) get(ctx context.Context, u *url.URL, header http.Header) ([]byte, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	where := u.Scheme + "://" + u.Host + u.Path
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", where, err)
		}
		req.Header = header.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // url.Error repeats the URL with its query
			}
			return nil, fmt.Errorf("GET %s: %w", where, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("GET %s: read the answer: %w", where, err)
		}
		if len(body) > maxBody {
			return nil, fmt.Errorf("GET %s: the answer exceeds %d bytes", where, maxBody)
		}
		if resp.StatusCode == http.StatusOK {
			return body, nil
		}
		retry := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		if !retry || attempt >= c.retries() {
			return nil, fmt.Errorf("GET %s: %s: %s", where, resp.Status, snippet(body))
		}
		wait := backoff
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), c.now()); ok {
			wait = d
		}
		maxWait := c.MaxWait
		if maxWait <= 0 {
			maxWait = 2 * time.Minute
		}
		if err := c.sleep(ctx, min(wait, maxWait)); err != nil {
			return nil, fmt.Errorf("GET %s: waiting to retry after %s: %w", where, resp.Status, err)
		}
		backoff *= 2
	}
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// snippet returns the start of an error answer, for the error message.
func snippet(b []byte) string {
	const n = 300
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
