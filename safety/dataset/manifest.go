package dataset

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Manifest describes a dataset file: where it came from, under which
// licence, when, how it was sanitised, and the SHA-256 of the file.
//
//	filename     = "train.jsonl"
//	source       = "support tickets 2026-Q3, exported from the helpdesk"
//	license      = "internal"
//	date         = 2026-11-01
//	sanitisation = ["emails replaced by [EMAIL]", "names removed"]
//	sha256       = "9f86d0…"
type Manifest struct {
	Filename     string   `toml:"filename" json:"filename"`
	Source       string   `toml:"source" json:"source"`
	License      string   `toml:"license" json:"license"`
	Date         string   `toml:"-" json:"date"`
	Sanitisation []string `toml:"sanitisation" json:"sanitisation"`
	SHA256       string   `toml:"sha256" json:"sha256"`
}

// ErrHashMismatch reports a file whose SHA-256 is not the manifest's.
var ErrHashMismatch = errors.New("the file's SHA-256 does not match the manifest")

// LoadManifest reads a manifest. "licence" and "sanitization" are taken
// for "license" and "sanitisation"; any other unknown key is an error.
func LoadManifest(path string) (Manifest, error) {
	var raw struct {
		Manifest
		Licence      string   `toml:"licence"`
		Sanitization []string `toml:"sanitization"`
		Date         any      `toml:"date"`
	}
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Manifest{}, fmt.Errorf("manifest %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	m := raw.Manifest
	if m.License == "" {
		m.License = raw.Licence
	}
	if len(m.Sanitisation) == 0 {
		m.Sanitisation = raw.Sanitization
	}
	switch d := raw.Date.(type) {
	case nil:
	case string:
		m.Date = d
	case time.Time:
		m.Date = d.Format("2006-01-02")
	default:
		return Manifest{}, fmt.Errorf("manifest %s: date must be a date (2026-11-01)", path)
	}
	m.SHA256 = strings.ToLower(strings.TrimSpace(m.SHA256))
	return m, nil
}

// ManifestCheck is a manifest checked against its file.
type ManifestCheck struct {
	Path     string   `json:"path"`
	Manifest Manifest `json:"manifest"`
	// HashMatch: the file's SHA-256 is the manifest's.
	HashMatch bool `json:"hash_match"`
	// Problems lists missing fields and mismatches.
	Problems []string `json:"problems,omitempty"`
}

// CheckManifest checks m against the file at file whose SHA-256 is sum.
func CheckManifest(path string, m Manifest, file, sum string) *ManifestCheck {
	c := &ManifestCheck{Path: path, Manifest: m, HashMatch: m.SHA256 == sum}
	for _, f := range []struct{ name, v string }{
		{"filename", m.Filename}, {"source", m.Source}, {"license", m.License}, {"date", m.Date}, {"sha256", m.SHA256},
	} {
		if strings.TrimSpace(f.v) == "" {
			c.Problems = append(c.Problems, "missing "+f.name)
		}
	}
	if len(m.Sanitisation) == 0 {
		c.Problems = append(c.Problems, "missing sanitisation (list the steps, or [\"none\"])")
	}
	if m.Date != "" {
		if _, err := time.Parse("2006-01-02", m.Date); err != nil {
			c.Problems = append(c.Problems, fmt.Sprintf("date %q is not YYYY-MM-DD", m.Date))
		}
	}
	if m.Filename != "" && m.Filename != filepath.Base(file) {
		c.Problems = append(c.Problems, fmt.Sprintf("filename %q is not the file checked (%s)", m.Filename, filepath.Base(file)))
	}
	if m.SHA256 != "" && !c.HashMatch {
		c.Problems = append(c.Problems, fmt.Sprintf("sha256 %s does not match the file's %s", m.SHA256, sum))
	}
	return c
}
