package standalone

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/testkit"
)

// TestOutcomesEndToEnd sends usage events and workflow outcomes over HTTP and reads them back
// from ClickHouse's workflow views: every outcome once, though one body is sent twice, and
// each workflow's cost next to its latest outcome.
func TestOutcomesEndToEnd(t *testing.T) {
	conn := openClickHouse(t)
	db := freshDatabase(t, conn)
	p := startPipeline(t, db, 2)
	base := "http://" + p.CollectorAddr()
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }

	var events []string
	for i, wf := range []string{"wf-a", "wf-a", "wf-b", "wf-c"} {
		events = append(events, fmt.Sprintf(`{"id":"oe-%d","time":%q,"provider":"openai","model":"gpt-4o","usage":{"input_tokens":%d,"output_tokens":%d},"tags":{"team":"support","feature":"triage"},"workflow_id":%q}`,
			i, at(time.Duration(i-10)*time.Minute), 1000*(i+1), 100*(i+1), wf))
	}
	send(t, base+"/v1/events", strings.Join(events, "\n"), `{"accepted":4,"rejected":[]}`)
	outcomes := strings.Join([]string{
		fmt.Sprintf(`{"workflow_id":"wf-a","outcome":"escalated","time":%q}`, at(-5*time.Minute)),
		fmt.Sprintf(`{"workflow_id":"wf-a","outcome":"resolved","time":%q}`, at(-4*time.Minute)),
		fmt.Sprintf(`{"workflow_id":"wf-b","outcome":"abandoned","time":%q}`, at(-3*time.Minute)),
		`{"workflow_id":"wf-b","outcome":"Nope"}`,
	}, "\n")
	wantAnswer := `{"accepted":3,"rejected":[{"index":3,"workflow_id":"wf-b","error":"outcome: \"Nope\" must be 1 to 64 characters of a-z, 0-9, '_', '.', '-'"}]}`
	send(t, base+"/v1/outcomes", outcomes, wantAnswer)
	send(t, base+"/v1/outcomes", outcomes, wantAnswer) // a client retry: stored once

	query := queryString(t, conn)
	// count answers "" until the aggregator has created the tables.
	count := func(table string) string {
		var s string
		_ = conn.QueryRow(context.Background(), "SELECT toString(count()) FROM "+db+"."+table).Scan(&s)
		return s
	}
	testkit.EventuallyEquals(t, 60*time.Second, "outcomes and events stored", "3 4", func() string { return count("outcomes") + " " + count("usage_events") })
	// Each workflow's cost in workflow_results equals the sum over its events, to the digit.
	got := query("SELECT arrayStringConcat(groupArray(line), ';') FROM (SELECT concat(workflow_id, ' ', toString(events), ' ', outcome, ' ', toString(outcomes), ' ', toString(cost_usd)) AS line FROM " +
		db + ".workflow_results ORDER BY workflow_id)")
	want := query("SELECT arrayStringConcat(groupArray(line), ';') FROM (SELECT concat(workflow_id, ' ', toString(count()), ' ', " +
		"multiIf(workflow_id = 'wf-a', 'resolved 2', workflow_id = 'wf-b', 'abandoned 1', ' 0'), ' ', toString(sum(cost_usd))) AS line FROM " +
		db + ".usage_events GROUP BY workflow_id ORDER BY workflow_id)")
	if got != want || !strings.HasPrefix(got, "wf-a 2 resolved 2 0.") {
		t.Errorf("workflow_results = %q, want %q", got, want)
	}
	if err := p.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
}

func send(t *testing.T, url, body, want string) {
	t.Helper()
	resp, err := http.Post(url, "application/x-ndjson", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var got, exp any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, data)
	}
	_ = json.Unmarshal([]byte(want), &exp)
	if resp.StatusCode != http.StatusAccepted || fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Fatalf("POST %s: %d %s, want 202 %s", url, resp.StatusCode, data, want)
	}
}
