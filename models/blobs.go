package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/types/model"
)

// Store is the backend's model directory (OLLAMA_MODELS): manifests under
// manifests/<host>/<namespace>/<model>/<tag>, blobs under
// blobs/sha256-<hex>. Warden reads it to verify blobs and to remove the
// partial downloads of a cancelled pull; every change goes through the
// backend's API.
type Store struct {
	Dir string
}

// Manifest is an Ollama model manifest, as stored.
type Manifest struct {
	Config Layer   `json:"config"`
	Layers []Layer `json:"layers"`
}

// Layer is one blob of a manifest.
type Layer struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	From      string `json:"from,omitempty"`
}

// Blobs lists the manifest's blobs: the config first, then the layers.
func (m *Manifest) Blobs() []Layer {
	out := make([]Layer, 0, len(m.Layers)+1)
	if m.Config.Digest != "" {
		out = append(out, m.Config)
	}
	return append(out, m.Layers...)
}

// validDigest reports whether d is "sha256:" and 64 lowercase hex.
func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// BlobPath is where the blob with digest lives.
func (s Store) BlobPath(digest string) (string, error) {
	if !validDigest(digest) {
		return "", fmt.Errorf("bad blob digest %q", digest)
	}
	return filepath.Join(s.Dir, "blobs", strings.Replace(digest, ":", "-", 1)), nil
}

// ReadManifest reads the manifest of name and returns it with its digest
// (sha256 of the file, as /api/tags reports it).
func (s Store) ReadManifest(name string) (*Manifest, string, error) {
	canon, ok := Canonical(name)
	if !ok {
		return nil, "", fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	p, err := s.manifestPath(canon)
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, "", fmt.Errorf("read manifest of %s: %w", canon, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, "", fmt.Errorf("manifest of %s is not JSON: %w", canon, err)
	}
	sum := sha256.Sum256(b)
	return &m, hex.EncodeToString(sum[:]), nil
}

// BlobState is the verdict on one blob.
type BlobState string

// The verdicts of Verify.
const (
	BlobOK        BlobState = "ok"
	BlobMissing   BlobState = "missing"
	BlobCorrupted BlobState = "corrupted"
)

// BlobCheck is one blob's verdict.
type BlobCheck struct {
	Digest string    `json:"digest"`
	Media  string    `json:"media_type"`
	Size   int64     `json:"size"`
	State  BlobState `json:"state"`
	Got    string    `json:"got,omitempty"` // the digest the bytes have, when corrupted
	Detail string    `json:"detail,omitempty"`
}

// VerifyBlob re-hashes one blob against its digest and size; progress is
// called with the bytes hashed so far (may be nil).
func (s Store) VerifyBlob(l Layer, progress func(done int64)) BlobCheck {
	c := BlobCheck{Digest: l.Digest, Media: l.MediaType, Size: l.Size}
	p, err := s.BlobPath(l.Digest)
	if err != nil {
		c.State, c.Detail = BlobCorrupted, err.Error()
		return c
	}
	f, err := os.Open(p)
	if err != nil {
		c.State, c.Detail = BlobMissing, "cannot open "+p
		if !errors.Is(err, os.ErrNotExist) {
			c.State, c.Detail = BlobCorrupted, err.Error()
		}
		return c
	}
	defer f.Close()
	h := sha256.New()
	w := io.Writer(h)
	if progress != nil {
		w = &countWriter{w: h, fn: progress}
	}
	n, err := io.Copy(w, f)
	if err != nil {
		c.State, c.Detail = BlobCorrupted, "read: "+err.Error()
		return c
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	switch {
	case got != l.Digest:
		c.State, c.Got = BlobCorrupted, got
		c.Detail = "content does not match its digest"
	case l.Size > 0 && n != l.Size:
		c.State, c.Detail = BlobCorrupted, fmt.Sprintf("%d bytes, manifest says %d", n, l.Size)
	default:
		c.State = BlobOK
	}
	return c
}

type countWriter struct {
	w    io.Writer
	n    int64
	fn   func(int64)
	last int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.n-c.last >= 8<<20 {
		c.last = c.n
		c.fn(c.n)
	}
	return n, err
}

// RemovePartials removes the partial download files of the blobs with the
// given digests (sha256-<hex>-partial and its -partial-N part records),
// which Ollama keeps to resume a cancelled pull. It returns how many it
// removed.
func (s Store) RemovePartials(digests []string) (int, error) {
	removed := 0
	var errs []error
	for _, d := range digests {
		p, err := s.BlobPath(d)
		if err != nil {
			continue
		}
		matches, err := filepath.Glob(p + "-partial*")
		if err != nil {
			continue
		}
		for _, m := range matches {
			if err := os.Remove(m); err == nil {
				removed++
			} else if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// Partials lists the partial download files in the blobs directory.
func (s Store) Partials() ([]string, error) {
	return filepath.Glob(filepath.Join(s.Dir, "blobs", "sha256-*-partial*"))
}

// Referenced returns the digests of every blob some manifest references.
func (s Store) Referenced() (map[string]bool, error) {
	refs := map[string]bool{}
	root := filepath.Join(s.Dir, "manifests")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p == root {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var m Manifest
		if json.Unmarshal(b, &m) != nil {
			return nil // not a manifest
		}
		for _, l := range m.Blobs() {
			refs[l.Digest] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	return refs, nil
}

// RemoveUnreferenced removes the blobs with the given digests that no
// manifest references, and returns how many it removed.
func (s Store) RemoveUnreferenced(digests []string) (int, error) {
	refs, err := s.Referenced()
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, d := range digests {
		if refs[d] {
			continue
		}
		p, err := s.BlobPath(d)
		if err != nil {
			continue
		}
		if err := os.Remove(p); err == nil {
			removed++
		}
	}
	return removed, nil
}

// blobDigests lists the digests of the blobs directory's files, whole or
// partial.
func (s Store) blobDigests() (map[string]bool, error) {
	out := map[string]bool{}
	if s.Dir == "" {
		return out, nil
	}
	entries, err := os.ReadDir(filepath.Join(s.Dir, "blobs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), "sha256-")
		if !ok || len(n) < 64 {
			continue
		}
		out["sha256:"+n[:64]] = true
	}
	return out, nil
}

// ReplaceManifest points the name dst at the manifest of src by writing a
// copy of src's manifest beside dst's and renaming it over: a reader sees
// the old manifest or the new one, never a part. The new file keeps the
// old one's owner and mode (the backend's user must still be able to
// replace it). ok is false when dst has no manifest file to replace.
func (s Store) ReplaceManifest(src, dst string) (ok bool, err error) {
	srcPath, err := s.manifestPath(src)
	if err != nil {
		return false, err
	}
	dstPath, err := s.manifestPath(dst)
	if errors.Is(err, ErrNotFound) {
		return false, nil // nothing to replace: the backend creates it
	}
	if err != nil {
		return false, err
	}
	fi, err := os.Stat(dstPath)
	if err != nil {
		return false, nil
	}
	b, err := os.ReadFile(srcPath)
	if err != nil {
		return false, fmt.Errorf("read manifest of %s: %w", src, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dstPath), ".warden-manifest-*")
	if err != nil {
		return false, fmt.Errorf("replace manifest of %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: no such file
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return false, fmt.Errorf("replace manifest of %s: %w", dst, err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return false, fmt.Errorf("replace manifest of %s: %w", dst, err)
	}
	if uid, gid, ok := fileOwner(fi); ok {
		if err := tmp.Chown(uid, gid); err != nil {
			tmp.Close()
			return false, fmt.Errorf("replace manifest of %s: %w", dst, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("replace manifest of %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("replace manifest of %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dstPath); err != nil {
		return false, fmt.Errorf("replace manifest of %s: %w", dst, err)
	}
	return true, nil
}

// manifestPath is where the manifest of name is, matched without regard
// to case as Ollama keeps the case a name was first given in.
func (s Store) manifestPath(name string) (string, error) {
	canon, ok := Canonical(name)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	n := model.ParseName(canon)
	p := filepath.Join(s.Dir, "manifests", n.Filepath())
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	dir := filepath.Join(s.Dir, "manifests")
	for _, part := range []string{n.Host, n.Namespace, n.Model, n.Tag} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", fmt.Errorf("%w: no manifest for %s", ErrNotFound, canon)
		}
		found := ""
		for _, e := range entries {
			if strings.EqualFold(e.Name(), part) {
				found = e.Name()
				break
			}
		}
		if found == "" {
			return "", fmt.Errorf("%w: no manifest for %s", ErrNotFound, canon)
		}
		dir = filepath.Join(dir, found)
	}
	return dir, nil
}
