package models

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/warden-llm/warden/safety/audit"
	"github.com/warden-llm/warden/safety/store"
)

// Backend is what a Governor asks the supervised Ollama: the Catalog's
// questions, and the calls that change models. ollama/api's Client is one.
type Backend interface {
	API
	Pull(ctx context.Context, req *api.PullRequest, fn api.PullProgressFunc) error
	Copy(ctx context.Context, req *api.CopyRequest) error
	Delete(ctx context.Context, req *api.DeleteRequest) error
	Create(ctx context.Context, req *api.CreateRequest, fn api.CreateProgressFunc) error
	CreateBlob(ctx context.Context, digest string, r io.Reader) error
	Generate(ctx context.Context, req *api.GenerateRequest, fn api.GenerateResponseFunc) error
}

var _ Backend = (*api.Client)(nil)

// The errors of a Governor, beside ErrNotFound and ErrNotAllowed.
var (
	// ErrBadName is the error of a name that cannot be a model name.
	ErrBadName = errors.New("malformed model name")
	// ErrNoVersion is the error of a rollback or pin to a version the
	// model does not have (kept) or never had.
	ErrNoVersion = errors.New("no such version")
	// ErrKept is the error of an operation on a kept version's hidden
	// name, which only rollback uses.
	ErrKept = errors.New("a kept version, not a model")
)

// The actions a Governor writes to admin_events and the audit chain.
const (
	ActionPull     = "model.pull"
	ActionImport   = "model.import"
	ActionRollback = "model.rollback"
	ActionRemove   = "model.remove"
	ActionPin      = "model.pin"
	ActionUnpin    = "model.unpin"
	ActionAnnotate = "model.annotate"
)

// DefaultKeepVersions is how many previous versions of a name are kept for
// rollback when Governor.KeepVersions is 0.
const DefaultKeepVersions = 2

// Governor changes the backend's models the governed way: only names the
// allowlist admits, each change of what a name points to recorded
// (history, admin event, audit chain) after the previous version was kept
// under a hidden name (KeptName) for rollback, pins by manifest digest.
// The CLI and the admin API share it; it is safe to use from a CLI process
// while a server runs on the same database and backend.
type Governor struct {
	Backend Backend
	DB      *store.DB
	Store   Store // the backend's models directory
	Allow   Allowlist
	// Pins are [models.pins]: canonical name → manifest digest. A pin in
	// the database (`warden models pin`) takes precedence.
	Pins map[string]string
	// KeepVersions is how many previous versions of a name are kept
	// (0: DefaultKeepVersions; below 0: 0).
	KeepVersions int
	// Need estimates a model's VRAM for show (nil: not shown).
	Need func(ctx context.Context, name string) (uint64, error)
	// OnChange, if set, is called after a change of what a name points
	// to (the server's Catalog.Invalidate, so it serves the change at once).
	OnChange func()
	// OnPinChange, if set, is called after a change that may move a pin
	// (pin, unpin, and every change OnChange hears of): the server's
	// Guard.Invalidate, so it serves the change at once.
	OnPinChange func()
	Now         func() time.Time // nil: time.Now
}

func (g *Governor) changed() {
	if g.OnChange != nil {
		g.OnChange()
	}
	g.pinsChanged()
}

func (g *Governor) pinsChanged() {
	if g.OnPinChange != nil {
		g.OnPinChange()
	}
}

func (g *Governor) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Governor) keep() int {
	switch {
	case g.KeepVersions == 0:
		return DefaultKeepVersions
	case g.KeepVersions < 0:
		return 0
	}
	return g.KeepVersions
}

// Progress is one step of a long operation: Ollama's pull progress, an
// upload or a verification, and Warden's own steps. Its JSON is the line
// format of --json and of the admin API's NDJSON streams.
type Progress struct {
	Status    string `json:"status"`
	Digest    string `json:"digest,omitempty"`
	Total     int64  `json:"total,omitempty"`
	Completed int64  `json:"completed,omitempty"`
}

// ProgressFunc receives progress; an error stops the operation.
type ProgressFunc func(Progress) error

// Change is what an operation did to a name.
type Change struct {
	Name    string `json:"name"`
	Action  string `json:"action"`
	Old     string `json:"old_digest,omitempty"`
	New     string `json:"new_digest,omitempty"`
	Changed bool   `json:"changed"`
	// Kept is the hidden name the previous version is kept under.
	Kept string `json:"kept,omitempty"`
	// PinMoved says a rollback moved the name's pin to the new digest.
	PinMoved bool `json:"pin_moved,omitempty"`
	// PinMismatch says the name is pinned to another digest: it is not
	// served until it is pinned again or rolled back.
	PinMismatch bool     `json:"pin_mismatch,omitempty"`
	Pruned      []string `json:"pruned,omitempty"`
}

func canonicalArg(name string) (string, error) {
	canon, ok := Canonical(strings.TrimSpace(name))
	if !ok {
		return "", fmt.Errorf("%w: %q (want [host/][namespace/]model[:tag], letters, digits, _ . -)", ErrBadName, name)
	}
	if IsKept(canon) {
		return "", fmt.Errorf("%w: %s (use `warden models rollback %s --to DIGEST`)", ErrKept, canon, keptOf(canon))
	}
	return canon, nil
}

// allowedArg is canonicalArg for a name that must be inside [models]
// allow (pull, import, load): outside it, an error wrapping ErrNotAllowed.
func (g *Governor) allowedArg(name string) (string, error) {
	canon, err := canonicalArg(name)
	if err == nil && !g.Allow.Allowed(canon) {
		err = fmt.Errorf("%w: %s is outside [models] allow", ErrNotAllowed, canon)
	}
	return canon, err
}

// current finds the model called canon in the backend's list.
func (g *Governor) current(ctx context.Context, canon string) (Info, bool, error) {
	list, err := g.list(ctx)
	if err != nil {
		return Info{}, false, err
	}
	for _, m := range list {
		if c, _ := Canonical(m.Name); c == canon {
			return m, true, nil
		}
	}
	return Info{}, false, nil
}

// existing is current for a model that must be there: a name the backend
// does not list is an error wrapping ErrNotFound.
func (g *Governor) existing(ctx context.Context, canon string) (Info, error) {
	m, ok, err := g.current(ctx, canon)
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s", ErrNotFound, canon)
	}
	return m, err
}

func (g *Governor) list(ctx context.Context) ([]Info, error) {
	resp, err := g.Backend.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	out := make([]Info, 0, len(resp.Models))
	for _, m := range resp.Models {
		out = append(out, Info{Name: m.Name, Digest: bareDigest(m.Digest), Modified: m.ModifiedAt, Size: m.Size})
	}
	return out, nil
}

// kept lists the kept versions of canon.
func (g *Governor) kept(ctx context.Context, canon string) ([]Info, error) {
	list, err := g.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []Info
	base := keptBase(canon)
	for _, m := range list {
		if base != "" && keptOf(m.Name) == base {
			out = append(out, m)
		}
	}
	return out, nil
}

// keptBase is what keptOf gives for every kept version of canon (the
// name with its tag cut as KeptName cuts it).
func keptBase(canon string) string {
	k, ok := KeptName(canon, strings.Repeat("0", 12))
	if !ok {
		return ""
	}
	return keptOf(k)
}

// keepCurrent copies the version cur of canon to its hidden name, unless
// it is kept already; made says whether this call made the copy.
func (g *Governor) keepCurrent(ctx context.Context, canon string, cur Info) (name string, made bool, err error) {
	name, ok := KeptName(canon, cur.Digest)
	if !ok {
		return "", false, fmt.Errorf("keep %s: bad digest %q", canon, cur.Digest)
	}
	if k, had, err := g.current(ctx, name); err != nil {
		return "", false, err
	} else if had && SameDigest(k.Digest, cur.Digest) {
		return name, false, nil
	}
	if err := g.Backend.Copy(ctx, &api.CopyRequest{Source: cur.Name, Destination: name}); err != nil {
		return "", false, fmt.Errorf("keep the previous version of %s as %s: %w", canon, name, err)
	}
	return name, true, nil
}

func (g *Governor) drop(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = g.Backend.Delete(ctx, &api.DeleteRequest{Model: name})
}

// Pull pulls name (a registry host may lead it) through the backend's
// /api/pull, passing its progress to fn. A name outside the allowlist is
// refused before the backend is asked anything. When the pull changes the
// manifest the name points to, the previous version is kept first
// (KeptName), the change is recorded, and versions beyond KeepVersions are
// pruned. A failed or cancelled pull removes its partial downloads and
// leaves the previous version serving.
func (g *Governor) Pull(ctx context.Context, actor, name string, insecure bool, fn ProgressFunc) (Change, error) {
	canon, err := g.allowedArg(name)
	if err != nil {
		return Change{}, err
	}
	if err := checkActor(actor); err != nil {
		return Change{}, err
	}
	n := model.ParseName(canon)
	scheme := "https"
	if insecure {
		scheme = "http"
	}
	source := fmt.Sprintf("%s://%s/v2/%s/%s/manifests/%s", scheme, n.Host, n.Namespace, n.Model, n.Tag)
	return g.change(ctx, actor, canon, ActionPull, source, "", func() error {
		seen := map[string]bool{}
		before, _ := g.Store.blobDigests() // what was there: never cleaned up
		err := g.Backend.Pull(ctx, &api.PullRequest{Model: strings.TrimSpace(name), Insecure: insecure}, func(p api.ProgressResponse) error {
			if p.Digest != "" {
				seen[p.Digest] = true
			}
			if fn == nil {
				return nil
			}
			return fn(Progress{Status: p.Status, Digest: p.Digest, Total: p.Total, Completed: p.Completed})
		})
		if err == nil {
			err = ctx.Err() // the client's stream can end cleanly on a cancel
		}
		if err == nil {
			// A manifest the backend wrote but cannot read (its config is
			// not a model's) is not listed: remove it with what it brought.
			if _, ok, lerr := g.current(ctx, canon); lerr == nil && !ok {
				g.drop(ctx, strings.TrimSpace(name))
				err = fmt.Errorf("the registry's %s is not a model the backend can read", canon)
			}
		}
		if err != nil {
			// The blobs it was fetching: those its progress named, and
			// those that appeared while it ran (a cancel can come before
			// the first progress of a blob).
			if now, err := g.Store.blobDigests(); err == nil {
				for d := range now {
					if !before[d] {
						seen[d] = true
					}
				}
			}
			for d := range before {
				delete(seen, d)
			}
			g.cleanPull(ctx, slices.Collect(mapKeys(seen)))
			return fmt.Errorf("pull %s: %w", canon, err)
		}
		return nil
	})
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// cleanPull removes what a failed pull left: the partial files of the
// blobs it was fetching and the whole blobs no manifest references. The
// backend's download of a blob stops a moment after its last waiter goes,
// and writes its part records as it stops: passes repeat until one finds
// nothing.
func (g *Governor) cleanPull(ctx context.Context, digests []string) {
	if g.Store.Dir == "" || len(digests) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	quiet := 0
	for i := 0; i < 40 && quiet < 3; i++ {
		n, _ := g.Store.RemovePartials(digests)
		m, _ := g.Store.RemoveUnreferenced(digests)

		if n+m == 0 {
			quiet++
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// change runs do, which changes what canon points to, the governed way:
// keep the previous version first, record the change after, drop the
// kept copy when nothing changed or do failed.
func (g *Governor) change(ctx context.Context, actor, canon, action, source, sourceSHA string, do func() error) (Change, error) {
	old, had, err := g.current(ctx, canon)
	if err != nil {
		return Change{}, err
	}
	ch := Change{Name: canon, Action: action}
	var made bool
	if had {
		ch.Old = old.Digest
		if ch.Kept, made, err = g.keepCurrent(ctx, canon, old); err != nil {
			return Change{}, err
		}
	}
	if err := do(); err != nil {
		if made {
			g.drop(ctx, ch.Kept)
		}
		return Change{}, err
	}
	cur, ok, err := g.current(ctx, canon)
	if err != nil {
		return Change{}, err
	}
	if !ok {
		return Change{}, fmt.Errorf("%s: the backend does not list it after the %s", canon, strings.TrimPrefix(action, "model."))
	}
	ch.New = cur.Digest
	if had && SameDigest(old.Digest, cur.Digest) {
		if made {
			g.drop(ctx, ch.Kept)
		}
		ch.Kept = ""
		return ch, nil
	}
	if !had {
		ch.Kept = ""
	}
	ch.Changed = true
	defer g.changed()
	lic, spdx := g.license(cur.Name)
	at := g.now()
	err = g.DB.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO model_history (at, name, action, old_digest, new_digest, source, actor)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, at.UnixMilli(), canon, strings.TrimPrefix(action, "model."), ch.Old, ch.New, source, actor); err != nil {
			return fmt.Errorf("record model history: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO model_provenance (name, digest, source, source_sha256, license, license_spdx, actor, at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name, digest) DO UPDATE SET source = excluded.source, source_sha256 = excluded.source_sha256,
				license = excluded.license, license_spdx = excluded.license_spdx, actor = excluded.actor, at = excluded.at`,
			canon, ch.New, source, sourceSHA, lic, spdx, actor, at.UnixMilli()); err != nil {
			return fmt.Errorf("record model provenance: %w", err)
		}
		return g.event(ctx, tx, at, actor, action, canon, ch.New, map[string]any{
			"name": canon, "old_digest": ch.Old, "new_digest": ch.New, "source": source, "kept": ch.Kept,
		})
	})
	if err != nil {
		return ch, err
	}
	if pin, _, err := g.pinOf(ctx, canon); err == nil && pin != "" && !SameDigest(pin, ch.New) {
		ch.PinMismatch = true
	}
	ch.Pruned, err = g.prune(ctx, canon, ch.New)
	return ch, err
}

// prune removes the kept versions of canon beyond KeepVersions, oldest
// first, never the current one or a pinned one. The backend's delete
// removes the blobs no other manifest references.
func (g *Governor) prune(ctx context.Context, canon, current string) ([]string, error) {
	kept, err := g.kept(ctx, canon)
	if err != nil {
		return nil, err
	}
	pin, _, _ := g.pinOf(ctx, canon)
	kept = slices.DeleteFunc(kept, func(m Info) bool {
		return SameDigest(m.Digest, current) || (pin != "" && SameDigest(m.Digest, pin))
	})
	slices.SortFunc(kept, func(a, b Info) int { return b.Modified.Compare(a.Modified) })
	var pruned []string
	for _, m := range kept[min(len(kept), g.keep()):] {
		if err := g.Backend.Delete(ctx, &api.DeleteRequest{Model: m.Name}); err != nil {
			return pruned, fmt.Errorf("prune kept version %s: %w", m.Name, err)
		}
		pruned = append(pruned, m.Name)
	}
	return pruned, nil
}

// event writes one admin event in tx, in admin_events and in the audit
// chain (with the model and its digest), as key changes are written.
func (g *Governor) event(ctx context.Context, tx *sql.Tx, at time.Time, actor, action, canon, digest string, detail any) error {
	d, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("write admin event: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO admin_events (at, actor, action, key_id, detail) VALUES (?, ?, ?, NULL, ?)`,
		at.UnixMilli(), actor, action, string(d)); err != nil {
		return fmt.Errorf("write admin event: %w", err)
	}
	chained, err := json.Marshal(struct {
		Actor  string          `json:"actor"`
		Action string          `json:"action"`
		Detail json.RawMessage `json:"detail"`
	}{actor, action, d})
	if err != nil {
		return fmt.Errorf("write admin event: %w", err)
	}
	rec := audit.Record{Time: at, Kind: audit.KindAdmin, Model: canon, ModelDigest: digest, Detail: chained}
	if _, err := audit.AppendTx(ctx, tx, rec); err != nil {
		return fmt.Errorf("write admin event to the audit trail: %w", err)
	}
	return nil
}

// checkActor refuses an empty actor: every change says who made it.
func checkActor(actor string) error {
	if strings.TrimSpace(actor) == "" || len(actor) > 128 {
		return errors.New("actor is required (e.g. os:alice or key:<id>)")
	}
	return nil
}
