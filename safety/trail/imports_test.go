package trail

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestAuditAndOutboxStayApart: the trail composes safety/audit and
// safety/outbox; neither may import the other (nor the trail).
func TestAuditAndOutboxStayApart(t *testing.T) {
	const mod = "github.com/warden-llm/warden/safety/"
	for pkg, banned := range map[string][]string{
		"audit":  {mod + "outbox", mod + "trail"},
		"outbox": {mod + "audit", mod + "trail"},
	} {
		files, err := filepath.Glob(filepath.Join("..", pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no sources for %s: %v", pkg, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				for _, b := range banned {
					if p == b {
						t.Errorf("%s imports %s", f, p)
					}
				}
			}
		}
	}
}
