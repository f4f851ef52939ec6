package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
)

// Listed is one model as `warden models list` shows it.
type Listed struct {
	Name     string    `json:"name"`
	Digest   string    `json:"digest"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified_at"`
	Allowed  bool      `json:"allowed"`
	Pinned   string    `json:"pinned,omitempty"` // the pinned digest
	PinOK    bool      `json:"pin_ok"`           // not pinned, or pinned to its digest
	Loaded   bool      `json:"loaded"`
	Versions int       `json:"kept_versions"`
}

// List lists the backend's models (kept versions counted under their
// name, not listed), each with whether it may be served.
func (g *Governor) List(ctx context.Context) ([]Listed, error) {
	list, err := g.list(ctx)
	if err != nil {
		return nil, err
	}
	loaded := g.loaded(ctx)
	kept := map[string]int{}
	for _, m := range list {
		if b := keptOf(m.Name); b != "" {
			kept[b]++
		}
	}
	var out []Listed
	for _, m := range list {
		if IsKept(m.Name) {
			continue
		}
		canon, ok := Canonical(m.Name)
		if !ok {
			continue
		}
		l := Listed{Name: m.Name, Digest: m.Digest, Size: m.Size, Modified: m.Modified,
			Allowed: g.Allow.Allowed(canon), Loaded: loaded[canon], Versions: kept[keptBase(canon)]}
		pin, _, err := g.pinOf(ctx, canon)
		if err != nil {
			return nil, err
		}
		l.Pinned, l.PinOK = pin, pin == "" || SameDigest(pin, m.Digest)
		out = append(out, l)
	}
	return out, nil
}

// loaded is the set of canonical names /api/ps reports (empty when it
// cannot answer).
func (g *Governor) loaded(ctx context.Context) map[string]bool {
	out := map[string]bool{}
	ps, err := g.Backend.ListRunning(ctx)
	if err != nil {
		return out
	}
	for _, m := range ps.Models {
		for _, n := range []string{m.Name, m.Model} {
			if c, ok := Canonical(n); ok {
				out[c] = true
			}
		}
	}
	return out
}

// Shown is one model as `warden models show` describes it.
type Shown struct {
	Listed
	PinSource      string   `json:"pin_source,omitempty"` // database or config
	Family         string   `json:"family,omitempty"`
	ParameterSize  string   `json:"parameter_size,omitempty"`
	Quantization   string   `json:"quantization,omitempty"`
	ContextLength  int      `json:"context_length,omitempty"`
	Capabilities   []string `json:"capabilities,omitempty"`
	License        string   `json:"license,omitempty"` // first lines
	LicenseSPDX    string   `json:"license_spdx,omitempty"`
	TemplateSHA256 string   `json:"template_sha256,omitempty"`
	VRAMEstimate   uint64   `json:"vram_estimate_bytes,omitempty"`
	Provenance     *Record  `json:"provenance,omitempty"`
}

// Show describes name: digest, size, shape, licence, template hash,
// allowed, pinned, loaded, the VRAM estimate and its provenance record.
func (g *Governor) Show(ctx context.Context, name string) (Shown, error) {
	canon, err := canonicalArg(name)
	if err != nil {
		return Shown{}, err
	}
	all, err := g.List(ctx)
	if err != nil {
		return Shown{}, err
	}
	var s Shown
	for _, l := range all {
		if c, _ := Canonical(l.Name); c == canon {
			s.Listed = l
		}
	}
	if s.Name == "" {
		return Shown{}, fmt.Errorf("%w: %s", ErrNotFound, canon)
	}
	_, s.PinSource, _ = g.pinOf(ctx, canon)
	show, err := g.Backend.Show(ctx, &api.ShowRequest{Model: s.Name})
	if err != nil {
		return Shown{}, fmt.Errorf("show %s: %w", canon, err)
	}
	s.Family = show.Details.Family
	s.ParameterSize = show.Details.ParameterSize
	s.Quantization = show.Details.QuantizationLevel
	arch, _ := show.ModelInfo["general.architecture"].(string)
	if v, ok := show.ModelInfo[arch+".context_length"].(float64); ok {
		s.ContextLength = int(v)
	}
	for _, c := range show.Capabilities {
		s.Capabilities = append(s.Capabilities, string(c))
	}
	s.License, s.LicenseSPDX = licenseSummary(show.License)
	if show.Template != "" {
		sum := sha256.Sum256([]byte(show.Template))
		s.TemplateSHA256 = hex.EncodeToString(sum[:])
	}
	if g.Need != nil {
		if n, err := g.Need(ctx, s.Name); err == nil {
			s.VRAMEstimate = n
		}
	}
	if rec, ok, err := g.record(ctx, canon, s.Digest); err != nil {
		return Shown{}, err
	} else if ok {
		s.Provenance = &rec
	}
	return s, nil
}

// license reads the licence layer of name's manifest from the models
// directory: its first lines and an SPDX guess ("" when it has none or
// the directory cannot be read).
func (g *Governor) license(name string) (string, string) {
	if g.Store.Dir == "" {
		return "", ""
	}
	m, _, err := g.Store.ReadManifest(name)
	if err != nil {
		return "", ""
	}
	var parts []string
	for _, l := range m.Layers {
		if l.MediaType != "application/vnd.ollama.image.license" {
			continue
		}
		p, err := g.Store.BlobPath(l.Digest)
		if err != nil {
			continue
		}
		b, err := readHead(p, 64<<10)
		if err == nil {
			parts = append(parts, string(b))
		}
	}
	return licenseSummary(strings.Join(parts, "\n"))
}

func readHead(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, _ := f.Read(b)
	return b[:k], nil
}

// licenseSummary is a licence's first non-empty lines (at most 5, 400
// bytes) and a guess of its SPDX identifier from well-known phrases.
func licenseSummary(text string) (string, string) {
	var lines []string
	size := 0
	for l := range strings.Lines(text) {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if len(lines) == 5 || size+len(l) > 400 {
			break
		}
		lines = append(lines, l)
		size += len(l)
	}
	return strings.Join(lines, "\n"), SPDXGuess(text)
}

// spdxPhrases map phrases of well-known licences to their SPDX ids, most
// specific first.
var spdxPhrases = []struct{ phrase, id string }{
	{"apache license, version 2.0", "Apache-2.0"},
	{"apache license\nversion 2.0", "Apache-2.0"},
	{"mit license", "MIT"},
	{"permission is hereby granted, free of charge", "MIT"},
	{"llama 3.2 community license", "LicenseRef-Llama-3.2-Community"},
	{"llama 3.1 community license", "LicenseRef-Llama-3.1-Community"},
	{"meta llama 3 community license", "LicenseRef-Llama-3-Community"},
	{"llama 2 community license", "LicenseRef-Llama-2-Community"},
	{"gemma terms of use", "LicenseRef-Gemma"},
	{"gnu general public license\nversion 3", "GPL-3.0"},
	{"gnu general public license version 3", "GPL-3.0"},
	{"creative commons attribution 4.0", "CC-BY-4.0"},
	{"creative commons attribution-noncommercial 4.0", "CC-BY-NC-4.0"},
	{"bsd 3-clause", "BSD-3-Clause"},
}

// SPDXGuess guesses the SPDX identifier of a licence text ("" when none
// of the known phrases occurs).
func SPDXGuess(text string) string {
	t := strings.ToLower(strings.Join(strings.Fields(text), " "))
	for _, p := range spdxPhrases {
		if strings.Contains(t, strings.Join(strings.Fields(p.phrase), " ")) {
			return p.id
		}
	}
	return ""
}

// ModelVerify is the verdict on one model's blobs.
type ModelVerify struct {
	Name   string      `json:"name"`
	Digest string      `json:"digest"`
	OK     bool        `json:"ok"`
	Error  string      `json:"error,omitempty"` // the manifest could not be read
	Blobs  []BlobCheck `json:"blobs"`
}

// Verify re-hashes every blob of name (every model when name is "")
// against its manifest in the models directory, passing progress to fn
// (status "verifying <12 hex>"), and reports each blob's verdict.
func (g *Governor) Verify(ctx context.Context, name string, fn ProgressFunc) ([]ModelVerify, error) {
	if g.Store.Dir == "" {
		return nil, fmt.Errorf("verify: the backend's models directory is unknown (runtime.ollama_url)")
	}
	list, err := g.list(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	if name != "" {
		canon, err := canonicalArg(name)
		if err != nil {
			return nil, err
		}
		for _, m := range list {
			if c, _ := Canonical(m.Name); c == canon {
				names = append(names, m.Name)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, canon)
		}
	} else {
		for _, m := range list {
			names = append(names, m.Name)
		}
		slices.Sort(names)
	}
	var out []ModelVerify
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		v := ModelVerify{Name: n, OK: true}
		m, digest, err := g.Store.ReadManifest(n)
		if err != nil {
			v.OK, v.Error = false, err.Error()
			out = append(out, v)
			continue
		}
		v.Digest = digest
		for _, l := range m.Blobs() {
			status := "verifying " + short(l.Digest)
			var perr error
			progress := func(done int64) {
				if fn != nil && perr == nil {
					perr = fn(Progress{Status: status, Digest: l.Digest, Total: l.Size, Completed: done})
				}
			}
			progress(0)
			c := g.Store.VerifyBlob(l, progress)
			if perr == nil {
				progress(l.Size)
			}
			if perr != nil {
				return out, perr
			}
			v.OK = v.OK && c.State == BlobOK
			v.Blobs = append(v.Blobs, c)
		}
		out = append(out, v)
	}
	return out, nil
}
