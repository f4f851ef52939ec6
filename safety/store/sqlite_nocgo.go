//go:build !cgo

package store

import (
	"context"
	"errors"
)

// Without cgo, mattn/go-sqlite3 is a stub whose Open fails: these stand in
// for the parts of the store that name its cgo-only API, so the module still
// builds and vets with cgo off (go vet, GOOS=darwin go build).

var errNoCgo = errors.New("this warden was built without cgo: SQLite needs it")

var errBusy = errors.New("database is locked")

func friendly(_ string, err error) error { return err }

func (db *DB) backupTo(context.Context, string) error { return errNoCgo }
