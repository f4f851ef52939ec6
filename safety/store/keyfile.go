package store

import (
	"os"
	"path/filepath"
)

// CreateKeyFile creates path 0600 holding b, fsynced with its directory,
// and fails if the file exists (a concurrent creator won: the caller reads
// the winner's file). On error nothing is left behind. Warden's secrets
// (audit signing and text keys, the canary key) are made this way.
func CreateKeyFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
