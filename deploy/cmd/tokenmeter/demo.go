package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tokenmeter/tokenmeter/deploy/loadgen"
	"github.com/tokenmeter/tokenmeter/deploy/summary"
	"github.com/tokenmeter/tokenmeter/schemas/event"
	"github.com/tokenmeter/tokenmeter/schemas/redact"
)

// runDemo drives synthetic traffic (deploy/loadgen: many teams and models, duplicates, a few
// invalid events) into the collector at about rate events/s and prints a spend summary from
// ClickHouse every interval, until ctx is done.
func runDemo(ctx context.Context, url string, rate int, dsn, db string, interval time.Duration) {
	gen := loadgen.New(loadgen.DefaultConfig(time.Now().UTC()))
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", redact.DSNError(err, dsn))
		return
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return
	}
	defer conn.Close()
	const tick = 250 * time.Millisecond
	perTick := max(1, rate*int(tick/time.Millisecond)/1000)
	send, show := time.NewTicker(tick), time.NewTicker(interval)
	defer send.Stop()
	defer show.Stop()
	start := time.Now().Add(-25 * time.Hour)
	for {
		select {
		case <-ctx.Done():
			return
		case <-send.C:
			items := make([]loadgen.Item, perTick)
			for i := range items {
				items[i] = gen.Next()
			}
			if _, err := postEvents(ctx, url, loadgen.NDJSON(items)); err != nil {
				fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			}
		case <-show.C:
			r, err := summary.Query(ctx, conn, db, start, 8)
			if err != nil {
				fmt.Fprintf(os.Stderr, "demo: %v\n", err)
				continue
			}
			fmt.Println()
			summary.Print(os.Stdout, r)
		}
	}
}

type ingestResult struct {
	Accepted int               `json:"accepted"`
	Rejected []event.Rejection `json:"rejected"`
}

func postEvents(ctx context.Context, url string, ndjson []byte) (ingestResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ndjson))
	if err != nil {
		return ingestResult{}, err
	}
	req.Header.Set("Content-Type", event.ContentNDJSON)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ingestResult{}, fmt.Errorf("post events: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return ingestResult{}, fmt.Errorf("post events: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var r ingestResult
	if err := json.Unmarshal(body, &r); err != nil {
		return ingestResult{}, fmt.Errorf("post events: response %q: %w", body, err)
	}
	return r, nil
}
