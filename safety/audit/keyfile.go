package audit

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/warden-llm/warden/safety/store"
)

// The key files in the data dir.
const (
	SigningKeyFile = "audit_ed25519.key" // PEM PKCS#8 ed25519 private key, 0600
	TextKeyFile    = "audit_text.key"    // 32 random bytes, 0600
)

// ErrKeyFile reports a missing or unusable key file; the message names it.
var ErrKeyFile = errors.New("audit key file")

// readKeyFile reads path; a missing file is (nil, nil).
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrKeyFile, path, err)
	}
	return b, nil
}

// loadSigningKey reads the checkpoint signing key. When the file is
// missing: if mayCreate, a new key is written; otherwise (checkpoints
// exist and would no longer verify) it is an error naming the file.
func loadSigningKey(dataDir string, mayCreate bool) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, SigningKeyFile)
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if b == nil {
		if !mayCreate {
			return nil, fmt.Errorf("%w %s is missing but the audit trail has signed checkpoints: restore the file from a backup (a new key would not verify them)", ErrKeyFile, path)
		}
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate audit signing key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("encode audit signing key: %w", err)
		}
		err = store.CreateKeyFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if errors.Is(err, fs.ErrExist) {
			return loadSigningKey(dataDir, false)
		}
		if err != nil {
			return nil, fmt.Errorf("%w %s: create: %v", ErrKeyFile, path, err)
		}
		return priv, nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w %s is corrupt (not a PEM private key): restore it from a backup", ErrKeyFile, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w %s is corrupt (%v): restore it from a backup", ErrKeyFile, path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w %s holds a %T, want an ed25519 key", ErrKeyFile, path, k)
	}
	return priv, nil
}

// loadTextKey reads the text encryption key, creating it when missing and
// mayCreate (no encrypted text exists yet).
func loadTextKey(dataDir string, mayCreate bool) (cipher.AEAD, error) {
	path := filepath.Join(dataDir, TextKeyFile)
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if b == nil {
		if !mayCreate {
			return nil, fmt.Errorf("%w %s is missing but encrypted audit text exists: restore the file from a backup, or purge the text", ErrKeyFile, path)
		}
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generate audit text key: %w", err)
		}
		err := store.CreateKeyFile(path, b)
		if errors.Is(err, fs.ErrExist) {
			return loadTextKey(dataDir, false)
		}
		if err != nil {
			return nil, fmt.Errorf("%w %s: create: %v", ErrKeyFile, path, err)
		}
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("%w %s is corrupt (%d bytes, want 32): restore it from a backup", ErrKeyFile, path, len(b))
	}
	blk, err := aes.NewCipher(b)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrKeyFile, path, err)
	}
	return cipher.NewGCM(blk)
}

// hasRows reports whether a query counting rows finds any.
func hasRows(ctx context.Context, q queryer, query string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, query).Scan(&n)
	return n > 0, err
}
