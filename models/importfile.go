package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/parser"
)

// ImportSpec is a GGUF file to import as a model.
type ImportSpec struct {
	Path string // the .gguf file
	Name string
	// Modelfile is the text of a Modelfile whose commands other than
	// FROM and ADAPTER apply (TEMPLATE, SYSTEM, PARAMETER, LICENSE, ...).
	Modelfile string
	License   string // licence text (from --license FILE)
	Source    string // where the file came from (default: its path)
}

// Import checks that spec.Path is a GGUF file (magic and version) before
// anything else, hashes it, uploads it as a blob (the backend checks the
// digest as it lands) and creates the model spec.Name from it, the
// governed way (allowlist, kept previous version, history, provenance).
// fn receives the hashing and upload progress.
func (g *Governor) Import(ctx context.Context, actor string, spec ImportSpec, fn ProgressFunc) (Change, error) {
	canon, err := g.allowedArg(spec.Name)
	if err != nil {
		return Change{}, err
	}
	if err := checkActor(actor); err != nil {
		return Change{}, err
	}
	f, err := os.Open(spec.Path)
	if err != nil {
		return Change{}, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	if _, err := CheckGGUF(f); err != nil {
		return Change{}, fmt.Errorf("import %s: %w", spec.Path, err)
	}
	req := &api.CreateRequest{}
	if spec.Modelfile != "" {
		mf, err := parser.ParseFile(strings.NewReader(spec.Modelfile))
		if err != nil {
			return Change{}, fmt.Errorf("import: modelfile: %w", err)
		}
		kept := mf.Commands[:0]
		for _, c := range mf.Commands {
			if c.Name != "model" && c.Name != "adapter" {
				kept = append(kept, c)
			}
		}
		mf.Commands = kept
		if req, err = mf.CreateRequest(filepath.Dir(spec.Path)); err != nil {
			return Change{}, fmt.Errorf("import: modelfile: %w", err)
		}
	}
	if spec.License != "" {
		req.License = spec.License
	}
	fi, err := f.Stat()
	if err != nil {
		return Change{}, fmt.Errorf("import: %w", err)
	}
	size := fi.Size()
	step := func(status string) func(int64) error {
		return func(done int64) error {
			if fn == nil {
				return nil
			}
			return fn(Progress{Status: status, Total: size, Completed: done})
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Change{}, fmt.Errorf("import: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, &progressReader{ctx: ctx, r: f, fn: step("hashing")}); err != nil {
		return Change{}, fmt.Errorf("import: hash %s: %w", spec.Path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	digest := "sha256:" + sum
	source := spec.Source
	if source == "" {
		if abs, err := filepath.Abs(spec.Path); err == nil {
			source = "file://" + abs
		} else {
			source = "file://" + spec.Path
		}
	}
	return g.change(ctx, actor, canon, ActionImport, source, sum, func() error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		uploaded := step("uploading " + short(digest))
		up := &progressReader{ctx: ctx, r: f, fn: uploaded}
		if err := g.Backend.CreateBlob(ctx, digest, up); err != nil {
			return fmt.Errorf("import: upload %s: %w", spec.Path, err)
		}
		if up.stop() != size {
			// The backend had the blob and answered before reading it all.
			if err := uploaded(size); err != nil {
				return err
			}
		}
		stream := false
		req.Model = spec.Name
		req.Stream = &stream
		req.Files = map[string]string{filepath.Base(spec.Path): digest}
		err := g.Backend.Create(ctx, req, func(api.ProgressResponse) error { return nil })
		if err == nil {
			err = ctx.Err() // the client's stream can end cleanly on a cancel
		}
		if err != nil {
			return fmt.Errorf("import: create %s: %w", canon, err)
		}
		return nil
	})
}

// progressReader reports bytes read, at most every 4 MiB, and stops when
// ctx ends. The HTTP client may still read it after its call returned
// (the backend answered before the body was sent): reads and reported
// take its lock.
type progressReader struct {
	ctx     context.Context
	r       io.Reader
	fn      func(int64) error
	mu      sync.Mutex
	n       int64
	last    int64
	stopped bool
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return 0, io.EOF
	}
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.last >= 4<<20 || (errors.Is(err, io.EOF) && p.n != p.last) {
		p.last = p.n
		if ferr := p.fn(p.n); ferr != nil {
			return n, ferr
		}
	}
	return n, err
}

// stop ends the reads (they return EOF, fn is not called again) and
// returns the last count passed to fn.
func (p *progressReader) stop() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	return p.last
}
