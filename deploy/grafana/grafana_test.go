package grafana

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

const plugin = "grafana-clickhouse-datasource"

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Query      string      `json:"query"`
	Datasource *datasource `json:"datasource"`
	IncludeAll bool        `json:"includeAll"`
	Multi      bool        `json:"multi"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
		EditorType string      `json:"editorType"`
		Format     *int        `json:"format"`
		QueryType  string      `json:"queryType"`
		RawSQL     string      `json:"rawSql"`
	} `json:"targets"`
}

func load(t *testing.T) map[string]dashboard {
	t.Helper()
	names, err := fs.Glob(Dashboards, "*.json")
	if err != nil || len(names) != 2 {
		t.Fatalf("dashboards: %v, %v; want 2 files", names, err)
	}
	out := map[string]dashboard{}
	uids := map[string]bool{}
	for _, name := range names {
		data, err := Dashboards.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(data)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d.UID == "" || uids[d.UID] || d.Title == "" || d.SchemaVersion < 36 || len(d.Panels) == 0 {
			t.Errorf("%s: uid %q (unique: %v), title %q, schemaVersion %d, %d panels", name, d.UID, !uids[d.UID], d.Title, d.SchemaVersion, len(d.Panels))
		}
		uids[d.UID] = true
		out[name] = d
	}
	return out
}

// TestDashboardsAreWellFormed checks what Grafana needs to import the dashboards: every panel
// and query on the ClickHouse data source chosen by the "datasource" variable, raw SQL, unique
// panel ids on the 24-column grid.
func TestDashboardsAreWellFormed(t *testing.T) {
	for name, d := range load(t) {
		vars := map[string]variable{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v
		}
		if v := vars["datasource"]; v.Type != "datasource" || v.Query != plugin {
			t.Errorf("%s: variable datasource = %+v, want a data source variable of %s", name, v, plugin)
		}
		if v := vars["database"]; v.Type != "textbox" || v.Query != "tokenmeter" {
			t.Errorf("%s: variable database = %+v, want a textbox defaulting to tokenmeter", name, v)
		}
		for _, tag := range []string{"team", "feature", "env"} {
			if v := vars[tag]; v.Type != "query" || !v.Multi || !v.IncludeAll || v.Datasource == nil || v.Datasource.Type != plugin {
				t.Errorf("%s: variable %s = %+v, want a multi-value query variable with All", name, tag, v)
			}
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			where := fmt.Sprintf("%s: panel %d %q", name, p.ID, p.Title)
			if ids[p.ID] || p.Title == "" || p.Datasource == nil || *p.Datasource != (datasource{plugin, "${datasource}"}) {
				t.Errorf("%s: duplicate id, no title or data source %+v", where, p.Datasource)
			}
			ids[p.ID] = true
			if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
				t.Errorf("%s: grid position %+v off the 24-column grid", where, p.GridPos)
			}
			if len(p.Targets) != 1 {
				t.Errorf("%s: %d queries, want 1", where, len(p.Targets))
				continue
			}
			q := p.Targets[0]
			wantFormat := map[string]int{"timeseries": 0, "table": 1}[q.QueryType]
			if q.RefID != "A" || q.EditorType != "sql" || q.RawSQL == "" || q.Format == nil || *q.Format != wantFormat ||
				q.Datasource == nil || q.Datasource.Type != plugin || (p.Type == "timeseries") != (q.QueryType == "timeseries") {
				t.Errorf("%s: query %+v", where, q)
			}
		}
	}
}

// grafanaRange is the time range the queries are expanded for: the 30 days up to the seeded Now.
type grafanaRange struct{ from, to time.Time }

var (
	dateFilter = regexp.MustCompile(`\$__dateFilter\(([^()]+)\)`)
	timeFilter = regexp.MustCompile(`\$__timeFilter\(([^()]+)\)`)
	quotedVar  = regexp.MustCompile(`\$\{([a-z_]+):singlequote\}`)
)

// expand does what Grafana and the plugin do to a query before it reaches ClickHouse: macros
// (as the plugin documents them) and variables, a multi-value variable as the quoted list of
// its selected values.
func expand(t *testing.T, sql string, r grafanaRange, db string, selected map[string][]string) string {
	t.Helper()
	sql = dateFilter.ReplaceAllString(sql, fmt.Sprintf("$1 >= toDate('%s') AND $1 <= toDate('%s')", r.from.Format(time.DateOnly), r.to.Format(time.DateOnly)))
	sql = timeFilter.ReplaceAllString(sql, fmt.Sprintf("$1 >= toDateTime(%d) AND $1 <= toDateTime(%d)", r.from.Unix(), r.to.Unix()))
	sql = strings.ReplaceAll(sql, "$__fromTime", fmt.Sprintf("toDateTime(%d)", r.from.Unix()))
	sql = strings.ReplaceAll(sql, "$__toTime", fmt.Sprintf("toDateTime(%d)", r.to.Unix()))
	sql = strings.ReplaceAll(sql, "${database}", db)
	sql = quotedVar.ReplaceAllStringFunc(sql, func(m string) string {
		name := quotedVar.FindStringSubmatch(m)[1]
		values, ok := selected[name]
		if !ok {
			t.Fatalf("variable %s has no values", name)
		}
		var quoted []string
		for _, v := range values {
			quoted = append(quoted, "'"+strings.ReplaceAll(v, "'", `\'`)+"'")
		}
		return strings.Join(quoted, ",")
	})
	if strings.Contains(sql, "$") {
		t.Fatalf("unexpanded macro or variable in %s", sql)
	}
	return sql
}

// rows runs a query and renders every row as its values joined by " | ": Decimal exactly,
// Date as YYYY-MM-DD, DateTime as YYYY-MM-DD hh:mm:ss.
func rows(t *testing.T, conn driver.Conn, sql string) []string {
	t.Helper()
	rs, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	defer rs.Close()
	types := rs.ColumnTypes()
	out := []string{}
	for rs.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rs.Scan(dest...); err != nil {
			t.Fatalf("scan: %v\n%s", err, sql)
		}
		var cells []string
		for i, d := range dest {
			switch v := reflect.ValueOf(d).Elem().Interface().(type) {
			case decimal.Decimal:
				cells = append(cells, v.String())
			case time.Time:
				if types[i].DatabaseTypeName() == "Date" {
					cells = append(cells, v.Format(time.DateOnly))
				} else {
					cells = append(cells, v.UTC().Format(time.DateTime))
				}
			case float64:
				cells = append(cells, strconv.FormatFloat(v, 'f', -1, 64))
			default:
				cells = append(cells, fmt.Sprint(v))
			}
		}
		out = append(out, strings.Join(cells, " | "))
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	return out
}

// TestDashboardQueriesOnClickHouse runs every variable and panel query of both dashboards on
// the seeded data (summarytest), with every value of the variables selected, then with team
// "search" alone, and checks each answer exactly.
func TestDashboardQueriesOnClickHouse(t *testing.T) {
	conn := chtest.Conn(t)
	db := summarytest.Seed(t, conn, summarytest.Events())
	r := grafanaRange{from: summarytest.Now().AddDate(0, 0, -30), to: summarytest.Now()}
	dashboards := load(t)

	all := map[string][]string{}
	for _, v := range dashboards["tokenmeter-spend.json"].Templating.List {
		if v.Type == "query" {
			all[v.Name] = rows(t, conn, expand(t, v.Query, r, db, nil))
		}
	}
	wantVars := map[string][]string{
		"team":    {"(untagged)", "search", "support"},
		"feature": {"(untagged)", "chat", "summarize"},
		"env":     {"(untagged)", "dev", "prod", "staging"},
	}
	if !reflect.DeepEqual(all, wantVars) {
		t.Errorf("variable values %v, want %v", all, wantVars)
	}
	searchOnly := map[string][]string{"team": {"search"}, "feature": wantVars["feature"], "env": wantVars["env"]}

	want := map[string]map[string][]string{
		"all": {
			"Spend in range":           {"110.250000000001"},
			"Events in range":          {"10"},
			"Cache savings in range":   {"0.1"},
			"Unpriced events in range": {"1"},
			"Daily spend by model": {
				"2026-10-31 00:00:00 | openai/gpt-4o | 100",
				"2026-11-01 00:00:00 | anthropic/claude-sonnet-4-5 | 0.000000000001",
				"2026-11-08 00:00:00 | openai/gpt-4o | 1",
				"2026-11-10 00:00:00 | anthropic/claude-sonnet-4-5 | 4",
				"2026-11-16 00:00:00 | openai/gpt-4o | 0.5",
				"2026-11-18 00:00:00 | acme/acme-llm-7 | 0",
				"2026-11-19 00:00:00 | openai/gpt-4o | 0.75",
				"2026-11-20 00:00:00 | anthropic/claude-sonnet-4-5 | 2.25",
				"2026-11-20 00:00:00 | openai/gpt-4o | 1.75",
			},
			"Hourly spend by team": {
				"2026-10-31 23:00:00 | search | 100",
				"2026-11-01 00:00:00 | support | 0.000000000001",
				"2026-11-08 12:00:00 | search | 1",
				"2026-11-10 12:00:00 | support | 4",
				"2026-11-16 12:00:00 | (untagged) | 0.5",
				"2026-11-18 08:00:00 | search | 0",
				"2026-11-19 09:00:00 | search | 0.75",
				"2026-11-20 10:00:00 | search | 1.5",
				"2026-11-20 11:00:00 | search | 0.25",
				"2026-11-20 11:00:00 | support | 2.25",
			},
			"Spend by team":    {"search | 6 | 103.5 | 1", "support | 3 | 6.250000000001 | 0", "(untagged) | 1 | 0.5 | 0"},
			"Spend by feature": {"summarize | 5 | 103.5", "chat | 3 | 6.250000000001", "(untagged) | 2 | 0.5"},
			"Spend by model": {
				"openai/gpt-4o | 6 | 12600 | 1260 | 104",
				"anthropic/claude-sonnet-4-5 | 3 | 6001 | 601 | 6.250000000001",
				"acme/acme-llm-7 | 1 | 10 | 10 | 0",
			},
			"Top movers by team (7 days to the end of the range against the 7 before)": {
				"support | 2.25 | 4 | -1.75", "search | 2.5 | 1 | 1.5", "(untagged) | 0.5 | 0 | 0.5",
			},
			"Top movers by model (7 days to the end of the range against the 7 before)": {
				"openai/gpt-4o | 3 | 1 | 2", "anthropic/claude-sonnet-4-5 | 2.25 | 4 | -1.75",
			},
			"Spend fully attributed (team, feature and env set)": {"99.5"},
			"Untagged spend (no team)":                           {"0.5"},
			"Unpriced models":                                    {"1"},
			"Tag coverage by team": {
				"search | 103.5 | 103.5 | 100", "support | 6.250000000001 | 6.250000000001 | 100", "(untagged) | 0.5 | 0 | 0",
			},
			"Share of spend carrying each tag": {"99.5 | 99.5 | 100 | 99.5"},
			"Unpriced models (table)":          {"acme | acme-llm-7 | 1 | 2026-11-18 | 2026-11-18"},
			"Spend by cost centre and env": {
				"cc-search | prod | 5 | 103.5", "cc-support | prod | 2 | 6.25", "(untagged) | dev | 1 | 0.5",
				"cc-support | staging | 1 | 0.000000000001", "(untagged) | (untagged) | 1 | 0",
			},
			// No call of the seeded data was estimated (summary.TestMeteredShare has some).
			"Metered share by team and feature": {
				"search | summarize | 5 | 0 | 0 | 100", "support | chat | 3 | 0 | 0 | 100",
				"(untagged) | (untagged) | 1 | 0 | 0 | 100", "search | (untagged) | 1 | 0 | 0 | 100",
			},
		},
		"search": {
			"Spend in range":           {"103.5"},
			"Events in range":          {"6"},
			"Cache savings in range":   {"0.1"},
			"Unpriced events in range": {"1"},
			"Daily spend by model": {
				"2026-10-31 00:00:00 | openai/gpt-4o | 100",
				"2026-11-08 00:00:00 | openai/gpt-4o | 1",
				"2026-11-18 00:00:00 | acme/acme-llm-7 | 0",
				"2026-11-19 00:00:00 | openai/gpt-4o | 0.75",
				"2026-11-20 00:00:00 | openai/gpt-4o | 1.75",
			},
			"Hourly spend by team": {
				"2026-10-31 23:00:00 | search | 100",
				"2026-11-08 12:00:00 | search | 1",
				"2026-11-18 08:00:00 | search | 0",
				"2026-11-19 09:00:00 | search | 0.75",
				"2026-11-20 10:00:00 | search | 1.5",
				"2026-11-20 11:00:00 | search | 0.25",
			},
			"Spend by team":    {"search | 6 | 103.5 | 1"},
			"Spend by feature": {"summarize | 5 | 103.5", "(untagged) | 1 | 0"},
			"Spend by model":   {"openai/gpt-4o | 5 | 12300 | 1230 | 103.5", "acme/acme-llm-7 | 1 | 10 | 10 | 0"},
			"Top movers by team (7 days to the end of the range against the 7 before)":  {"search | 2.5 | 1 | 1.5"},
			"Top movers by model (7 days to the end of the range against the 7 before)": {"openai/gpt-4o | 2.5 | 1 | 1.5"},
			"Spend fully attributed (team, feature and env set)":                        {"100"},
			"Untagged spend (no team)":          {"0"},
			"Unpriced models":                   {"1"},
			"Tag coverage by team":              {"search | 103.5 | 103.5 | 100"},
			"Share of spend carrying each tag":  {"100 | 100 | 100 | 100"},
			"Unpriced models (table)":           {"acme | acme-llm-7 | 1 | 2026-11-18 | 2026-11-18"},
			"Spend by cost centre and env":      {"cc-search | prod | 5 | 103.5", "(untagged) | (untagged) | 1 | 0"},
			"Metered share by team and feature": {"search | summarize | 5 | 0 | 0 | 100", "search | (untagged) | 1 | 0 | 0 | 100"},
		},
	}
	for selection, vars := range map[string]map[string][]string{"all": all, "search": searchOnly} {
		seen := map[string]bool{}
		for _, name := range []string{"tokenmeter-spend.json", "tokenmeter-attribution.json"} {
			for _, p := range dashboards[name].Panels {
				title := p.Title
				if p.Type == "table" && title == "Unpriced models" {
					title = "Unpriced models (table)"
				}
				seen[title] = true
				got := rows(t, conn, expand(t, p.Targets[0].RawSQL, r, db, vars))
				if w, ok := want[selection][title]; !ok || !reflect.DeepEqual(got, w) {
					t.Errorf("%s, %s selected, %q:\n got %q\nwant %q", name, selection, title, got, w)
				}
			}
		}
		for title := range want[selection] {
			if !seen[title] {
				t.Errorf("no panel %q", title)
			}
		}
	}
}
