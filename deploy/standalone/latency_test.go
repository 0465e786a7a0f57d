package standalone

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkSpikeToPage measures, in the whole single process with the default evaluation
// interval, how long a spend spike takes from the collector's 202 to the webhook's receipt of
// its page: with group_wait 0s (what the alerter adds: pricing, the history copy, the
// evaluation, the send) and with the default 3s. The time includes each iteration's
// pseudo-random wait only in ns/op, not in the percentiles. Each iteration is a spike of a new team, so
// each pages once. Reported as p50 and p99 over the iterations, in ms:
//
//	go test -run '^$' -bench SpikeToPage -benchtime 20x ./deploy/standalone/
func BenchmarkSpikeToPage(b *testing.B) {
	for _, wait := range []string{"0s", "3s"} {
		b.Run("group_wait="+wait, func(b *testing.B) {
			pages := make(chan string, 64)
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var p struct {
					Alerts []struct {
						Labels map[string]string `json:"labels"`
					} `json:"alerts"`
				}
				_ = json.NewDecoder(r.Body).Decode(&p)
				for _, a := range p.Alerts {
					pages <- a.Labels["team"]
				}
			}))
			defer hook.Close()
			rulesFile := filepath.Join(b.TempDir(), "rules.yaml")
			if err := os.WriteFile(rulesFile, []byte(fmt.Sprintf(`
builtins: {unpriced_model: false, untagged_share: false, team_spike: false, tier_fallback: false, billing_drift: false}
rules:
  - {name: team-burst, kind: threshold, group_by: [team], window: 5m, above: "1", severity: page}
route: {group_by: [alertname, team], group_wait: %s}
receivers:
  - {name: oncall, webhook: {url: %q}}
`, wait, hook.URL)), 0o644); err != nil {
				b.Fatal(err)
			}
			conn := openClickHouse(b)
			db := freshDatabase(b, conn)
			ctx, cancel := context.WithCancel(context.Background())
			p, err := Start(ctx, Config{DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0", ClickHouseDSN: clickhouseDSN(), Database: db,
				Partitions: 4, RulesFile: rulesFile, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				cancel()
				_ = p.Wait()
			}()
			for deadline := time.Now().Add(time.Minute); p.Ready() != nil; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("not ready: %v", p.Ready())
				}
			}
			url := "http://" + p.CollectorAddr() + "/v1/events"
			var took []time.Duration
			// Spikes come at any moment of the alerter's 1 s evaluation cycle, not in step
			// with it (a page leaves at an evaluation; a spike sent right after a page would
			// always wait a whole cycle): each waits a pseudo-random part of a second first.
			rng := rand.New(rand.NewPCG(1, 2))
			b.ResetTimer()
			for i := range b.N {
				time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
				team := fmt.Sprintf("t%d", i)
				body := fmt.Sprintf(`{"id":"spike-%d","provider":"openai","model":"gpt-4o","usage":{"input_tokens":1000000,"output_tokens":0},"tags":{"team":%q}}`, i, team)
				resp, err := http.Post(url, "application/x-ndjson", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				accepted := time.Now()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatalf("spike: %s", resp.Status)
				}
				for got := ""; got != team; {
					select {
					case got = <-pages:
					case <-time.After(30 * time.Second):
						b.Fatalf("no page for %s within 30s", team)
					}
				}
				took = append(took, time.Since(accepted))
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(took[(len(took)*99)/100].Milliseconds()), "p99-ms")
		})
	}
}
