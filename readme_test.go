package herdcap_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeSnippetsCompile holds every Go snippet of every Markdown file
// in the repository to code the compiler and the tests see: a ```go block
// must be the whole of a .go file of the module, or a run of whole lines of
// the body of an Example function (less its one tab of indentation), which
// go vet compiles and go test runs. So no snippet can stop compiling, or use
// a name the code no longer has, without failing here.
func TestReadmeSnippetsCompile(t *testing.T) {
	files, bodies := goSources(t)
	var mds []string
	require.NoError(t, filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".md") {
			mds = append(mds, path)
		}
		return nil
	}))
	blocks := 0
	for _, md := range mds {
		b, err := os.ReadFile(md)
		require.NoError(t, err)
		for _, s := range goBlocks(string(b)) {
			blocks++
			if files[s.text] || containsLines(bodies, s.text) {
				continue
			}
			t.Errorf("%s:%d: this Go snippet is neither a whole .go file of the module nor lines of an Example function's body; move it into an Example and quote it:\n%s", md, s.line, s.text)
		}
	}
	assert.Positive(t, blocks, "the READMEs have Go snippets to check")
}

// snippet is one ```go block: its text and the line of its fence.
type snippet struct {
	text string
	line int
}

// goBlocks returns the ```go blocks of a Markdown text.
func goBlocks(md string) []snippet {
	var out []snippet
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		start := i + 1
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		out = append(out, snippet{text: strings.Join(lines[start:i], "\n") + "\n", line: start})
	}
	return out
}

// goSources returns the text of every .go file of the module (keyed by
// text) and the bodies of its Example functions, each less one tab of
// indentation.
func goSources(t *testing.T) (map[string]bool, []string) {
	t.Helper()
	files := map[string]bool{}
	var bodies []string
	fset := token.NewFileSet()
	require.NoError(t, filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[string(src)] = true
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Example") || fn.Body == nil {
				continue
			}
			body := src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset]
			var b bytes.Buffer
			for _, l := range strings.Split(strings.Trim(string(body), "\n"), "\n") {
				b.WriteString(strings.TrimPrefix(l, "\t"))
				b.WriteByte('\n')
			}
			bodies = append(bodies, b.String())
		}
		return nil
	}))
	return files, bodies
}

// containsLines reports whether text is a run of whole lines of one of
// bodies.
func containsLines(bodies []string, text string) bool {
	for _, b := range bodies {
		if strings.HasPrefix(b, text) || strings.Contains(b, "\n"+text) {
			return true
		}
	}
	return false
}
