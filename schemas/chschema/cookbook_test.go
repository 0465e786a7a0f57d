package chschema

import (
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// cookbookPath is docs/cookbook.md, read from the repository so that the document cannot
// drift from what is tested.
var cookbookPath = filepath.Join("..", "..", "docs", "cookbook.md")

// recipe is one query of the cookbook with the answer printed under it.
type recipe struct {
	heading string
	sql     string
	header  []string
	rows    [][]string
}

// parseCookbook returns every ```sql block of doc with the first Markdown table that follows
// it, and every inline `SELECT …` code span (hints without a printed answer).
func parseCookbook(doc string) ([]recipe, []string, error) {
	var recipes []recipe
	lines := strings.Split(doc, "\n")
	heading := ""
	var prose []string
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(line, "## ") {
			heading = strings.TrimPrefix(line, "## ")
		}
		if strings.TrimSpace(line) != "```sql" {
			if !strings.HasPrefix(line, "|") && !strings.HasPrefix(line, "```") {
				prose = append(prose, line)
			}
			continue
		}
		var sql []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			sql = append(sql, lines[i])
		}
		if i == len(lines) {
			return nil, nil, fmt.Errorf("section %q: the sql block is not closed", heading)
		}
		r := recipe{heading: heading, sql: strings.Join(sql, "\n")}
		// The answer is the next table, before any other code block or heading.
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "|"); i++ {
			prose = append(prose, lines[i])
			if strings.HasPrefix(lines[i], "```") || strings.HasPrefix(lines[i], "#") {
				return nil, nil, fmt.Errorf("section %q: no table of the expected answer follows the query", heading)
			}
		}
		var table [][]string
		for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
			table = append(table, tableCells(lines[i]))
		}
		if len(table) < 2 || !isSeparator(table[1]) {
			return nil, nil, fmt.Errorf("section %q: the answer table has no header separator", heading)
		}
		r.header, r.rows = table[0], table[2:]
		for n, row := range r.rows {
			if len(row) != len(r.header) {
				return nil, nil, fmt.Errorf("section %q: row %d has %d cells, the header %d", heading, n+1, len(row), len(r.header))
			}
		}
		recipes = append(recipes, r)
		i--
	}
	var inline []string
	for _, m := range regexp.MustCompile("`(SELECT [^`]+)`").FindAllStringSubmatch(strings.Join(prose, "\n"), -1) {
		inline = append(inline, strings.Join(strings.Fields(m[1]), " "))
	}
	return recipes, inline, nil
}

var separatorCell = regexp.MustCompile(`^:?-+:?$`)

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if !separatorCell.MatchString(c) {
			return false
		}
	}
	return true
}

// tableCells splits a Markdown table row into its trimmed cells.
func tableCells(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	cells := strings.Split(line, "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

// sameCell compares a cell of ClickHouse's answer with the documented one: equal text, or
// equal numbers read as exact decimals (current releases print 0.0045 where 18.16 prints
// 0.004500000000, and 200 where the document may say 200.0).
func sameCell(got, want string) bool {
	if got == want {
		return true
	}
	g, okG := new(big.Rat).SetString(got)
	w, okW := new(big.Rat).SetString(want)
	return okG && okW && g.Cmp(w) == 0
}

func TestParseCookbook(t *testing.T) {
	doc := "# x\n\n## A\n\n```sql\nSELECT 1 AS a\n```\n\ntext `SELECT 2` more\n\n| a | b |\n|---|---|\n| 1 |  |\n| x | 2.50 |\n\n## B\n\n```sql\nSELECT 3\n```\n\n```sql\nSELECT 4\n```\n"
	if _, _, err := parseCookbook(doc); err == nil || !strings.Contains(err.Error(), `section "B": no table`) {
		t.Fatalf("parseCookbook(block without table) error = %v, want section \"B\": no table…", err)
	}
	doc = doc[:strings.Index(doc, "## B")]
	recipes, inline, err := parseCookbook(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := recipe{heading: "A", sql: "SELECT 1 AS a", header: []string{"a", "b"}, rows: [][]string{{"1", ""}, {"x", "2.50"}}}
	if len(recipes) != 1 || fmt.Sprint(recipes[0]) != fmt.Sprint(want) {
		t.Errorf("recipes = %+v, want [%+v]", recipes, want)
	}
	if len(inline) != 1 || inline[0] != "SELECT 2" {
		t.Errorf("inline = %q, want [SELECT 2]", inline)
	}
	if _, _, err := parseCookbook("## C\n```sql\nSELECT 1\n```\n| a |\n| 1 | 2 |\n"); err == nil {
		t.Error("parseCookbook(table with a wrong row) error = nil")
	}
	for _, tc := range []struct {
		got, want string
		same      bool
	}{
		{"0.004500000000", "0.0045", true}, {"200", "200.0", true}, {"-0.0009", "-0.000900000000", true},
		{"", "", true}, {"search", "search", true}, {"0.0045", "0.0046", false}, {"", "0", false}, {"a", "b", false},
	} {
		if got := sameCell(tc.got, tc.want); got != tc.same {
			t.Errorf("sameCell(%q, %q) = %v, want %v", tc.got, tc.want, got, tc.same)
		}
	}
}

// TestCookbook runs every query of docs/cookbook.md against the sample data and compares the
// answer with the one the document prints.
func TestCookbook(t *testing.T) {
	doc, err := os.ReadFile(cookbookPath)
	if err != nil {
		t.Fatalf("read the cookbook: %v", err)
	}
	recipes, inline, err := parseCookbook(string(doc))
	if err != nil {
		t.Fatalf("parse %s: %v", cookbookPath, err)
	}
	var headings []string
	for _, r := range recipes {
		headings = append(headings, r.heading)
	}
	// The questions issue 6 asks the cookbook to answer, one tested query each at least.
	wantHeadings := []string{
		"Spend by day, team and model", "Week over week by feature", "Cost per request: percentiles",
		"Cost per workflow", "Cost per successful outcome", "Cache savings",
		"Cache savings by team, feature and prompt version", "Did one-hour cache writes pay back?",
		"Re-rated costs beside the first price", "Prompt-version drift: tokens per request", "Untagged share",
		"What did web search cost?", // issue 14
	}
	if strings.Join(headings, "\n") != strings.Join(wantHeadings, "\n") {
		t.Errorf("the cookbook's tested recipes are\n%s\nwant\n%s", strings.Join(headings, "\n"), strings.Join(wantHeadings, "\n"))
	}

	ch := newClickHouse(t)
	db := ch.freshDatabase()
	ch.migrate(db)
	for _, table := range []string{"usage_events", "outcomes", "cost_corrections"} {
		seed(t, ch, db, table)
	}

	for _, r := range recipes {
		t.Run(r.heading, func(t *testing.T) {
			sql := strings.ReplaceAll(r.sql, "tokenmeter.", db+".")
			ch := &clickhouse{t: t, url: ch.url}
			out := ch.query(sql+"\nFORMAT TabSeparatedWithNames", "")
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			header := strings.Split(lines[0], "\t")
			if strings.Join(header, ",") != strings.Join(r.header, ",") {
				t.Fatalf("columns = %v, the cookbook shows %v", header, r.header)
			}
			got := lines[1:]
			if len(got) != len(r.rows) {
				t.Fatalf("%d rows, the cookbook shows %d:\n%s", len(got), len(r.rows), out)
			}
			for i, line := range got {
				cells := strings.Split(line, "\t")
				for j, want := range r.rows[i] {
					if j >= len(cells) || !sameCell(cells[j], want) {
						t.Errorf("row %d: %s = %q, the cookbook shows %q\n%s", i+1, r.header[j], cells[j], want, out)
					}
				}
			}
		})
	}
	if len(inline) == 0 {
		t.Error("the cookbook has no inline SELECT hints; the test of them would test nothing")
	}
	for _, q := range inline {
		ch.query(strings.ReplaceAll(q, "tokenmeter.", db+"."), "") // fails the test if ClickHouse refuses it
	}
}

// seed loads testdata/cookbook/<table>.tsv (a header line of column names, then rows) into
// db.table in one INSERT, so that the materialized views fill the roll-ups as in production.
func seed(t *testing.T, ch *clickhouse, db, table string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "cookbook", table+".tsv"))
	if err != nil {
		t.Fatalf("read sample data: %v", err)
	}
	header, rows, ok := strings.Cut(string(data), "\n")
	if !ok || rows == "" {
		t.Fatalf("testdata/cookbook/%s.tsv holds no rows", table)
	}
	cols := strings.Join(strings.Split(header, "\t"), ", ")
	ch.query("INSERT INTO "+db+"."+table+" ("+cols+") FORMAT TabSeparated", rows)
	if got, want := ch.query("SELECT count() FROM "+db+"."+table, ""), fmt.Sprintf("%d\n", strings.Count(rows, "\n")); got != want {
		t.Fatalf("%s holds %q rows after seeding, want %q", table, got, want)
	}
}

// TestTablesDocumented checks that TABLES.md describes every table and view the migrations
// create, and every column of each with its type, and nothing that does not exist.
func TestTablesDocumented(t *testing.T) {
	doc, err := os.ReadFile("TABLES.md")
	if err != nil {
		t.Fatal(err)
	}
	// documented[table][column] = type; a heading may name several tables.
	documented := map[string]map[string]string{}
	var current []string
	heading := regexp.MustCompile("`([a-z0-9_]+)`")
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "### "):
			current = nil
			for _, m := range heading.FindAllStringSubmatch(line, -1) {
				current = append(current, m[1])
				documented[m[1]] = map[string]string{}
			}
		case strings.HasPrefix(line, "| `") && len(current) == 1:
			cells := tableCells(line)
			documented[current[0]][strings.Trim(cells[0], "`")] = cells[1]
		}
	}

	ch := newClickHouse(t)
	db := ch.freshDatabase()
	ch.migrate(db)
	engines := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(ch.query("SELECT name, engine FROM system.tables WHERE database = '"+db+"' FORMAT TabSeparated", "")), "\n") {
		name, engine, _ := strings.Cut(line, "\t")
		engines[name] = engine
		if _, ok := documented[name]; !ok {
			t.Errorf("TABLES.md does not describe %s (%s)", name, engine)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(ch.query("SELECT table, name, type FROM system.columns WHERE database = '"+db+"' FORMAT TabSeparated", "")), "\n") {
		f := strings.Split(line, "\t")
		table, col, typ := f[0], f[1], f[2]
		if engines[table] == "MaterializedView" {
			continue // internal: the tables they fill are described
		}
		got, ok := documented[table][col]
		switch {
		case !ok:
			t.Errorf("TABLES.md does not describe column %s.%s (%s)", table, col, typ)
		case got != typ:
			t.Errorf("TABLES.md gives %s.%s the type %s, ClickHouse says %s", table, col, got, typ)
		}
		delete(documented[table], col)
	}
	for table, cols := range documented {
		if _, ok := engines[table]; !ok && table != "schema_migrations" {
			t.Errorf("TABLES.md describes %s, which the migrations do not create", table)
			continue
		}
		for col := range cols {
			if table != "schema_migrations" {
				t.Errorf("TABLES.md describes %s.%s, which does not exist", table, col)
			}
		}
	}
}
