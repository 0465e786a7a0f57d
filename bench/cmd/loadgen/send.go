package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/schemas/event"
)

// job is one request body and what the generator expects the collector to answer for it.
type job struct {
	body               []byte
	events             int
	accepted, rejected int // expected
}

// report is the outcome of a run. Counts are of events except httpErrors and retries, which
// count requests.
type report struct {
	sent                       int // events in bodies that were answered with 2xx
	accepted, rejected         int // as the collector answered
	wantAccepted, wantRejected int // as the generator expects for the answered bodies
	failed                     int // events in bodies that ended in an HTTP error
	httpErrors                 int
	retries                    int // 429/503 answers, each followed by a retry of the same body
	elapsed                    time.Duration
	latencies                  []time.Duration // of every request that got an answer
}

// maxLoggedErrors keeps a collector that fails every request from flooding the terminal.
const maxLoggedErrors = 10

// send generates events and posts them with cfg.clients concurrent requests until cfg.events
// are sent or cfg.duration has passed. One goroutine generates (a Generator is not safe for
// concurrent use, and it is fast enough not to be the limit) and paces the bodies; the clients
// post them. A body in flight when the duration ends is still delivered, so the counts stay
// consistent; cancelling ctx abandons it.
func send(ctx context.Context, cfg config, now time.Time, log *slog.Logger) (report, error) {
	gcfg := cfg.gen
	gcfg.Now = now
	if err := gcfg.Validate(); err != nil {
		return report{}, fmt.Errorf("configure the generator: %w", err)
	}
	gen := loadgen.New(gcfg)
	contentType := event.ContentNDJSON
	encode := loadgen.NDJSON
	if cfg.format == "array" {
		contentType, encode = event.ContentJSON, loadgen.JSONArray
	}

	produce := ctx
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		produce, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	start := time.Now()
	jobs := make(chan job, cfg.clients)
	go func() {
		defer close(jobs)
		items := make([]loadgen.Item, 0, cfg.batch)
		for sent := 0; cfg.events == 0 || sent < cfg.events; {
			if cfg.rate > 0 && !sleepUntil(produce, start.Add(time.Duration(float64(sent)/cfg.rate*float64(time.Second)))) {
				return
			}
			n := cfg.batch
			if cfg.events > 0 {
				n = min(n, cfg.events-sent)
			}
			items = items[:0]
			var tally loadgen.Tally
			for range n {
				items = append(items, gen.Next())
			}
			tally.Add(items...)
			j := job{body: encode(items), events: n, accepted: tally.Accepted(), rejected: tally.Rejected()}
			select {
			case jobs <- j:
			case <-produce.Done():
				return
			}
			sent += n
		}
	}()

	client := &http.Client{Timeout: cfg.timeout}
	results := make([]report, cfg.clients)
	var logged sync.Mutex
	nlogged := 0
	logErr := func(msg string, args ...any) {
		logged.Lock()
		defer logged.Unlock()
		if nlogged++; nlogged <= maxLoggedErrors {
			log.Error(msg, args...)
		} else if nlogged == maxLoggedErrors+1 {
			log.Error("further request errors are only counted")
		}
	}
	var wg sync.WaitGroup
	for i := range results {
		r := &results[i]
		wg.Go(func() {
			for j := range jobs {
				r.post(ctx, client, cfg.url, contentType, j, logErr)
			}
		})
	}
	wg.Wait()
	var total report
	for _, r := range results {
		total.add(r)
	}
	total.elapsed = time.Since(start)
	return total, ctx.Err()
}

// post sends one body until the collector answers something other than 429 or 503.
func (r *report) post(ctx context.Context, client *http.Client, url, contentType string, j job,
	logErr func(string, ...any)) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(j.body))
		if err != nil {
			r.fail(j, logErr, "build request", "error", err)
			return
		}
		req.Header.Set("Content-Type", contentType)
		began := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			r.fail(j, logErr, "post events", "events", j.events, "error", err)
			return
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		r.latencies = append(r.latencies, time.Since(began))
		if err != nil {
			r.fail(j, logErr, "read answer", "status", resp.StatusCode, "error", err)
			return
		}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			r.retries++
			if !sleepUntil(ctx, time.Now().Add(retryAfter(resp.Header.Get("Retry-After")))) {
				r.fail(j, logErr, "wait to retry", "status", resp.StatusCode, "error", ctx.Err())
				return
			}
			continue
		case resp.StatusCode/100 != 2:
			r.fail(j, logErr, "post events", "status", resp.StatusCode, "answer", string(clip(body)))
			return
		}
		var ans struct {
			Accepted int               `json:"accepted"`
			Rejected []event.Rejection `json:"rejected"`
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			r.fail(j, logErr, "decode answer", "status", resp.StatusCode, "answer", string(clip(body)), "error", err)
			return
		}
		r.sent += j.events
		r.accepted += ans.Accepted
		r.rejected += len(ans.Rejected)
		r.wantAccepted += j.accepted
		r.wantRejected += j.rejected
		return
	}
}

func (r *report) fail(j job, logErr func(string, ...any), msg string, args ...any) {
	r.httpErrors++
	r.failed += j.events
	logErr(msg, args...)
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// retryAfter reads a Retry-After header: seconds or an HTTP date. Without a usable value the
// client waits one second rather than hammering a collector that asked for a pause.
func retryAfter(v string) time.Duration {
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return time.Second
}

// sleepUntil waits for t and reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *report) add(o report) {
	r.sent += o.sent
	r.accepted += o.accepted
	r.rejected += o.rejected
	r.wantAccepted += o.wantAccepted
	r.wantRejected += o.wantRejected
	r.failed += o.failed
	r.httpErrors += o.httpErrors
	r.retries += o.retries
	r.latencies = append(r.latencies, o.latencies...)
}

// percentile returns the nearest-rank percentile p (0..100) of the request latencies.
func (r *report) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func (r *report) print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rate := 0.0
	if r.elapsed > 0 {
		rate = float64(r.sent) / r.elapsed.Seconds()
	}
	rows := []struct {
		name, value, note string
	}{
		{"events sent", strconv.Itoa(r.sent), ""},
		{"accepted", strconv.Itoa(r.accepted), fmt.Sprintf("expected %d", r.wantAccepted)},
		{"rejected", strconv.Itoa(r.rejected), fmt.Sprintf("expected %d", r.wantRejected)},
		{"HTTP errors", strconv.Itoa(r.httpErrors), fmt.Sprintf("%d events not delivered", r.failed)},
		{"retries (429/503)", strconv.Itoa(r.retries), ""},
		{"elapsed", r.elapsed.Round(time.Millisecond).String(), ""},
		{"events/s", strconv.FormatFloat(rate, 'f', 0, 64), ""},
		{"latency p50", r.percentile(50).Round(10 * time.Microsecond).String(), fmt.Sprintf("%d requests", len(r.latencies))},
		{"latency p99", r.percentile(99).Round(10 * time.Microsecond).String(), ""},
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", row.name, row.value, row.note)
	}
	return tw.Flush()
}
