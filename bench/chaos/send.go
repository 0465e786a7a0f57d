package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// Sender posts generated events to the collector as NDJSON bodies, the way a client that must
// not lose an event does: a body is retried — the same bytes — until it is answered 202, when
// the collector is unreachable, times out, or answers 429 or 503. Only then are its items
// added to the tally, once.
type Sender struct {
	URL string // the collector's base URL
	// BodyEvents is the number of items per body; Clients the bodies in flight at once.
	BodyEvents, Clients int
	// Rate caps the items sent per second; 0 sends as fast as the collector takes them.
	Rate float64

	client http.Client
	mu     sync.Mutex
	tally  loadgen.Tally
	// Retries counts bodies sent again after no answer or a 429/503.
	retries int
}

type ingestResponse struct {
	Accepted int               `json:"accepted"`
	Rejected []event.Rejection `json:"rejected"`
}

// Tally returns what was accepted so far. Read it only after Send has returned.
func (s *Sender) Tally() *loadgen.Tally { return &s.tally }

// Retries is how many bodies were sent again.
func (s *Sender) Retries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retries
}

// Send posts items from gen until the tally holds at least unique distinct valid events.
func (s *Sender) Send(ctx context.Context, gen *loadgen.Generator, unique int) error {
	bodies := make(chan []loadgen.Item, s.Clients)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		defer close(bodies)
		// Counting unique ids ahead of the tally decides when to stop generating.
		seen := make(map[string]struct{}, unique)
		start := time.Now()
		sent := 0
		for len(seen) < unique {
			items := make([]loadgen.Item, s.BodyEvents)
			for i := range items {
				items[i] = gen.Next()
				if items[i].Kind != loadgen.Invalid {
					seen[items[i].Event.ID] = struct{}{}
				}
			}
			if s.Rate > 0 {
				due := start.Add(time.Duration(float64(sent) / s.Rate * float64(time.Second)))
				select {
				case <-time.After(time.Until(due)):
				case <-ctx.Done():
					return
				}
			}
			sent += len(items)
			select {
			case bodies <- items:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range s.Clients {
		wg.Go(func() {
			for items := range bodies {
				if err := s.post(ctx, items); err != nil {
					cancel(err)
					for range bodies {
					}
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// Post sends items as one body, retrying until it is accepted, and tallies them.
func (s *Sender) Post(ctx context.Context, items []loadgen.Item) error { return s.post(ctx, items) }

func (s *Sender) post(ctx context.Context, items []loadgen.Item) error {
	body := loadgen.NDJSON(items)
	backoff := 50 * time.Millisecond
	for {
		r, status, err := s.try(ctx, body)
		if err == nil && status == http.StatusAccepted {
			invalid := 0
			for _, it := range items {
				if it.Kind == loadgen.Invalid {
					invalid++
				}
			}
			if r.Accepted != len(items)-invalid || len(r.Rejected) != invalid {
				return fmt.Errorf("collector accepted %d and rejected %d of %d events, want %d and %d",
					r.Accepted, len(r.Rejected), len(items), len(items)-invalid, invalid)
			}
			s.mu.Lock()
			s.tally.Add(items...)
			s.mu.Unlock()
			return nil
		}
		if err == nil && status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
			return fmt.Errorf("POST %s/v1/events: status %d", s.URL, status)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.mu.Lock()
		s.retries++
		s.mu.Unlock()
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *Sender) try(ctx context.Context, body []byte) (ingestResponse, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return ingestResponse{}, 0, err
	}
	req.Header.Set("Content-Type", event.ContentNDJSON)
	resp, err := s.client.Do(req)
	if err != nil {
		return ingestResponse{}, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return ingestResponse{}, 0, err
	}
	var r ingestResponse
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(data, &r); err != nil {
			return r, resp.StatusCode, fmt.Errorf("decode the collector's answer %q: %w", data, err)
		}
	}
	return r, resp.StatusCode, nil
}
