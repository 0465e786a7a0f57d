package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/schemas/kv"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// chromium finds headless Chromium: $TOKENMETER_CHROMIUM, or Debian's chromium on the PATH.
// A machine without it fails the test (it never skips); deploy/dashboard/chromium.sh installs it.
func chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("TOKENMETER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	tb.Fatal("headless Chromium is required for the dashboard's browser test: run deploy/dashboard/chromium.sh " +
		"(apt-get install chromium) or point TOKENMETER_CHROMIUM at a Chromium binary")
	return ""
}

// browser returns a chromedp context on a fresh headless Chromium, closed when the test ends.
func browser(tb testing.TB) context.Context {
	tb.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(tb)),
		chromedp.NoSandbox, // tests run as root in CI, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 2000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	tb.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// pageState is what the page shows, read from its charts (Chart.js instances) and tables.
type pageState struct {
	Generation string                `json:"generation"`
	State      string                `json:"state"`
	Charts     map[string]chartState `json:"charts"`
	Tables     map[string][][]string `json:"tables"`
	KPI        map[string]string     `json:"kpi"`
}

type chartState struct {
	Labels   []string       `json:"labels"`
	Datasets []datasetState `json:"datasets"`
	// Painted counts the canvas pixels that are not transparent: a chart that drew nothing
	// has none.
	Painted int `json:"painted"`
}

type datasetState struct {
	Label string    `json:"label"`
	Data  []float64 `json:"data"`
	Exact []string  `json:"exact"`
}

const readPage = `JSON.stringify((() => {
  const charts = {};
  for (const [name, ch] of Object.entries(window.tokenmeter.charts)) {
    const cv = ch.canvas, px = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
    let painted = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) painted++;
    charts[name] = { labels: ch.data.labels, painted,
      datasets: ch.data.datasets.map((d) => ({ label: d.label, data: d.data, exact: d.exact })) };
  }
  const tables = {};
  for (const t of document.querySelectorAll('table')) {
    tables[t.id] = [...t.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent));
  }
  const kpi = {};
  for (const e of document.querySelectorAll('.kpis .value')) kpi[e.id] = e.textContent;
  return { generation: document.body.dataset.generation, state: document.body.dataset.state, charts, tables, kpi };
})())`

func read(tb testing.TB, ctx context.Context, generation int) pageState {
	tb.Helper()
	sel := chromedp.CSS(fmt.Sprintf(`body[data-generation="%d"]`, generation))
	if err := chromedp.Do(ctx, chromedp.WaitReady(sel)); err != nil {
		tb.Fatalf("wait for the page's update %d: %v", generation, err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](readPage))
	if err != nil {
		tb.Fatalf("read the page: %v", err)
	}
	var p pageState
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		tb.Fatalf("decode the page's state %s: %v", raw, err)
	}
	if p.State != "ready" {
		msg, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#error")))
		tb.Fatalf("page state %q: %s", p.State, msg)
	}
	return p
}

func TestPageInHeadlessChromium(t *testing.T) {
	js := jetStream(t)
	put(t, js, kv.Alerts, map[string]string{
		"fp-1": `{"rule":"team-spike","labels":{"team":"search"},"state":"firing","since":"2026-11-20T11:00:00Z","value":"12.5","summary":"search spends 5x its baseline <img src=x onerror=alert(1)>","updated":"2026-11-20T11:59:00Z"}`,
	})
	srv, db := testServer(t, js)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	p := read(t, ctx, 1)

	for name, c := range p.Charts {
		if c.Painted == 0 {
			t.Errorf("chart %s painted nothing", name)
		}
	}
	// Daily spend by model over the default 30 days: every series must hold, day by day, what
	// ClickHouse holds.
	daily := p.Charts["daily"]
	if len(daily.Labels) != 30 || daily.Labels[0] != "2026-10-22" || daily.Labels[29] != "2026-11-20" {
		t.Errorf("daily chart days %v, want 2026-10-22..2026-11-20", daily.Labels)
	}
	conn := chtest.Conn(t)
	for _, ds := range daily.Datasets {
		provider, model, _ := strings.Cut(ds.Label, "/")
		for i, day := range daily.Labels {
			want := chtest.String(t, conn, "SELECT toString(sum(cost_usd)) FROM "+db+".usage_events WHERE provider = ? AND if(model_priced = '', model, model_priced) = ? AND toDate(time) = toDate(?)",
				provider, model, day)
			if !decimal.RequireFromString(want).Equal(decimal.RequireFromString(ds.Exact[i])) || ds.Data[i] != decimal.RequireFromString(want).InexactFloat64() {
				t.Errorf("daily chart %s on %s: %s (%v), ClickHouse holds %s", ds.Label, day, ds.Exact[i], ds.Data[i], want)
			}
		}
	}
	if got := labels(daily.Datasets); !reflect.DeepEqual(got, []string{"openai/gpt-4o", "anthropic/claude-sonnet-4-5", "acme/acme-llm-7"}) {
		t.Errorf("daily chart series %v", got)
	}

	checkChart(t, "spend by team", p.Charts["by"], []string{"search", "support", "(untagged)"}, []string{"103.5", "6.250000000001", "0.5"})
	checkChart(t, "trend", p.Charts["trend"],
		[]string{"2026-11-14", "2026-11-15", "2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"},
		[]string{"0", "0", "0.5", "0", "0", "0.75", "4"})
	checkTable(t, p, "table-by", [][]string{{"search", "6", "$103.50", "1"}, {"support", "3", "$6.25", "0"}, {"(untagged)", "1", "$0.50", "0"}})
	checkTable(t, p, "table-movers", [][]string{
		{"support", "$2.25", "$4.00", "-$1.75", "-43.8 %"}, {"search", "$2.50", "$1.00", "$1.50", "150.0 %"}, {"(untagged)", "$0.50", "$0.00", "$0.50", "new"}})
	checkTable(t, p, "table-unpriced", [][]string{{"acme", "acme-llm-7", "1", "2026-11-18", "2026-11-18"}})
	checkTable(t, p, "table-coverage", [][]string{
		{"team", "9", "$109.75", "99.5 %"}, {"feature", "8", "$109.75", "99.5 %"}, {"env", "9", "$110.25", "100.0 %"}, {"cost_center", "8", "$109.75", "99.5 %"}})
	checkTable(t, p, "table-metered", [][]string{
		{"search", "6", "0", "$0.00", "100.0 %"}, {"support", "3", "0", "$0.00", "100.0 %"}, {"(untagged)", "1", "0", "$0.00", "100.0 %"}})
	checkTable(t, p, "table-alerts", [][]string{{"firing", "team-spike", "search spends 5x its baseline <img src=x onerror=alert(1)>", "12.5", "2026-11-20T11:00:00Z"}})
	checkTable(t, p, "table-budgets", [][]string{{"no budgets"}})
	if want := map[string]string{"kpi-total": "$5.25", "kpi-previous": "$5.00", "kpi-change": "+5.0 %", "kpi-range": "$110.25"}; !reflect.DeepEqual(p.KPI, want) {
		t.Errorf("KPIs %v, want %v", p.KPI, want)
	}

	// Filtering on a team changes every chart to that team's spend.
	if err := choose(ctx, "filter-team", "search"); err != nil {
		t.Fatalf("choose team search: %v", err)
	}
	p = read(t, ctx, 2)
	checkChart(t, "spend by team, team search", p.Charts["by"], []string{"search"}, []string{"103.5"})
	checkChart(t, "trend, team search", p.Charts["trend"],
		[]string{"2026-11-14", "2026-11-15", "2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"},
		[]string{"0", "0", "0", "0", "0", "0.75", "1.75"})
	if got := labels(p.Charts["daily"].Datasets); !reflect.DeepEqual(got, []string{"openai/gpt-4o", "acme/acme-llm-7"}) {
		t.Errorf("daily chart series for team search: %v", got)
	}
	if want := map[string]string{"kpi-total": "$2.50", "kpi-previous": "$1.00", "kpi-change": "+150.0 %", "kpi-range": "$103.50"}; !reflect.DeepEqual(p.KPI, want) {
		t.Errorf("KPIs for team search %v, want %v", p.KPI, want)
	}

	// Grouping by model instead of team re-draws the breakdown, still filtered.
	if err := choose(ctx, "by", "model"); err != nil {
		t.Fatalf("group by model: %v", err)
	}
	p = read(t, ctx, 3)
	checkChart(t, "spend by model, team search", p.Charts["by"], []string{"openai/gpt-4o", "acme/acme-llm-7"}, []string{"103.5", "0"})

	if path := os.Getenv("TOKENMETER_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// choose selects a value in a <select> as a user does: the value changes, then one change event.
func choose(ctx context.Context, id, value string) error {
	return chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`{ const s = document.getElementById(%q); s.value = %q; s.dispatchEvent(new Event('change')); }`, id, value)))
}

func labels(ds []datasetState) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Label)
	}
	return out
}

// checkChart checks a one-dataset chart's labels, exact values and the numbers it plots.
func checkChart(tb testing.TB, name string, c chartState, wantLabels, wantExact []string) {
	tb.Helper()
	if len(c.Datasets) != 1 {
		tb.Errorf("%s: %d datasets, want 1", name, len(c.Datasets))
		return
	}
	var wantData []float64
	for _, e := range wantExact {
		wantData = append(wantData, decimal.RequireFromString(e).InexactFloat64())
	}
	d := c.Datasets[0]
	if !reflect.DeepEqual(c.Labels, wantLabels) || !reflect.DeepEqual(d.Exact, wantExact) || !reflect.DeepEqual(d.Data, wantData) {
		tb.Errorf("%s: labels %v exact %v data %v\nwant labels %v exact %v data %v", name, c.Labels, d.Exact, d.Data, wantLabels, wantExact, wantData)
	}
}

func checkTable(tb testing.TB, p pageState, id string, want [][]string) {
	tb.Helper()
	if got := p.Tables[id]; !reflect.DeepEqual(got, want) {
		tb.Errorf("table %s: %q, want %q", id, got, want)
	}
}
