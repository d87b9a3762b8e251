package cluster

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Every error code the admin API can answer with has a row in one of
// docs/api.md's error-code tables ("| `code` | status | meaning |"), so
// scripts switching on codes can find them all. The codes are read from
// the package's Code* constants, so a new one is covered at once.
func TestAPIErrorCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The enrollment endpoint's codes (jointoken_handler.go) belong to
	// the peer API, not the admin API.
	peerAPI := map[string]bool{CodeJoinRefused: true, CodeRateLimited: true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Code") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					code, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					if peerAPI[code] {
						continue
					}
					n++
					if !strings.Contains(string(doc), "\n| `"+code+"` | ") {
						t.Errorf("%s (%s, %q) has no row in docs/api.md's error-code tables", name.Name, f, code)
					}
				}
			}
		}
	}
	if n < 25 {
		t.Fatalf("found only %d error codes; has their declaration changed?", n)
	}
}

// Every admin endpoint has a row in docs/api.md's endpoint table (the
// API's own 404 sends readers there), and the table names no endpoint the
// API does not serve. /metrics is served by the node, next to the API.
func TestAPIEndpointsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The table is the first one after the introduction: rows "| `METHOD PATH` | ...".
	start := bytes.Index(doc, []byte("| method and path |"))
	if start < 0 {
		t.Fatal("docs/api.md has no endpoint table (a header \"| method and path |\")")
	}
	end := bytes.Index(doc[start:], []byte("\n\n"))
	if end < 0 {
		end = len(doc) - start
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z]+ /[^`]*)` \\|").FindAllSubmatch(doc[start:start+end], -1) {
		documented[string(m[1])] = true
	}
	served := map[string]bool{"GET /metrics": true}
	for _, rt := range (&api{}).routeTable() {
		served[rt.method+" "+rt.path] = true
	}
	for ep := range served {
		if !documented[ep] {
			t.Errorf("docs/api.md's endpoint table lacks `%s`", ep)
		}
	}
	for ep := range documented {
		if !served[ep] {
			t.Errorf("docs/api.md's endpoint table lists `%s`, which the API does not serve", ep)
		}
	}
	if len(served) < 20 {
		t.Fatalf("only %d endpoints found: %v", len(served), served)
	}
}
