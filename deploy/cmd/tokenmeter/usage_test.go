package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// dispatched returns the string cases of the first switch statement in function fn of file,
// read from the source: the commands (or subcommands) that function dispatches.
func dispatched(t *testing.T, file, fn string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			sw, ok := n.(*ast.SwitchStmt)
			if !ok || cases != nil {
				return cases == nil
			}
			cases = []string{}
			for _, s := range sw.Body.List {
				for _, e := range s.(*ast.CaseClause).List {
					if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						c, err := strconv.Unquote(lit.Value)
						if err != nil {
							t.Fatal(err)
						}
						cases = append(cases, c)
					}
				}
			}
			return false
		})
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no switch with string cases in func %s", file, fn)
	}
	return cases
}

// Every command "tokenmeter" dispatches, and every subcommand of pricing, has its line in the
// usage text that "tokenmeter help" prints: "  NAME" at the start of a line, then a
// description.
func TestUsageListsEveryCommand(t *testing.T) {
	lines := strings.Split(usage, "\n")
	listed := func(cmd string) bool {
		for _, l := range lines {
			if rest, ok := strings.CutPrefix(l, "  "+cmd+" "); ok && strings.TrimSpace(rest) != "" {
				return true
			}
		}
		return false
	}
	for _, d := range []struct{ file, fn, prefix string }{
		{"main.go", "run", ""},
		{"pricing.go", "runPricingTo", "pricing "},
	} {
		for _, c := range dispatched(t, d.file, d.fn) {
			if c == "help" || c == "-h" || c == "--help" {
				continue
			}
			if !listed(d.prefix + c) {
				t.Errorf("%s dispatches %q but the usage text has no line for %q:\n%s", d.fn, c, d.prefix+c, usage)
			}
		}
	}
	// runRules takes no switch: its one subcommand is validate.
	if !listed("rules validate") {
		t.Errorf("the usage text has no line for \"rules validate\"")
	}
	// The commands the operators' guide names, each with one line.
	for _, c := range []string{"run", "rules validate", "pricing validate", "send", "summary", "spend", "export", "rerate", "proxy", "dashboard", "reconcile"} {
		if !listed(c) {
			t.Errorf("the usage text has no line for %q", c)
		}
	}
}
