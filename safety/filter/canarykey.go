package filter

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/warden-llm/warden/safety/store"
)

// CanaryKeyFile holds the secret canaries are derived from. Losing it only
// changes future canaries.
const CanaryKeyFile = "canary.key"

// CanaryKey reads the data dir's canary key, creating it (32 random bytes,
// 0600) on first use.
func CanaryKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, CanaryKeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == 32:
		return b, nil
	case err == nil:
		return nil, fmt.Errorf("%s: want 32 bytes, found %d", path, len(b))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := store.CreateKeyFile(path, b); errors.Is(err, fs.ErrExist) {
		return CanaryKey(dataDir) // another process made it first
	} else if err != nil {
		return nil, err
	}
	return b, nil
}
