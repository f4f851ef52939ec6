package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"
)

// The actions Manager writes when it blocks or unblocks an end user.
const (
	ActionBlockUser   = "key.block_user"
	ActionUnblockUser = "key.unblock_user"
)

// MaxUserLen bounds an end user's id, e-mail or name, in bytes.
const MaxUserLen = 256

// MaxBlockedUsers bounds the end users one key may block.
const MaxBlockedUsers = 10000

// ErrBadUser reports an end user id (or e-mail, or name) that is too long,
// not UTF-8 or holds a control character.
var ErrBadUser = errors.New("invalid end user")

// CheckUser refuses an end user id, e-mail or name longer than MaxUserLen
// bytes, not valid UTF-8, or holding a control or format character
// (newlines, escapes, bidirectional overrides). The empty string is valid:
// it names no user. The id is only ever compared, stored through SQL
// parameters and shown; never used as a path.
func CheckUser(s string) error {
	if len(s) > MaxUserLen {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrBadUser, len(s), MaxUserLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadUser)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: holds the control character %U", ErrBadUser, r)
		}
	}
	return nil
}

// Delegates reports whether the key may name the end users of its requests.
func (p *Principal) Delegates() bool { return p.Allows(ScopeDelegate) }

// Blocks reports whether the key refuses the end user user.
func (p *Principal) Blocks(user string) bool {
	if p == nil || len(p.blocked) == 0 {
		return false
	}
	_, ok := p.blocked[user]
	return ok
}

// BlockUser refuses user under key id from now on (403 for that user
// only), with its admin event in the chain. Blocking a blocked user
// changes nothing and writes no event.
func (m *Manager) BlockUser(ctx context.Context, actor, id, user string) error {
	return m.setBlocked(ctx, actor, id, user, true)
}

// UnblockUser lets user use key id again. Unblocking a user who is not
// blocked changes nothing and writes no event.
func (m *Manager) UnblockUser(ctx context.Context, actor, id, user string) error {
	return m.setBlocked(ctx, actor, id, user, false)
}

func (m *Manager) setBlocked(ctx context.Context, actor, id, user string, block bool) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	if user == "" {
		return fmt.Errorf("%w: the user is required", ErrBadUser)
	}
	if err := CheckUser(user); err != nil {
		return err
	}
	now := m.now()
	return m.DB.InTx(ctx, func(tx *sql.Tx) error {
		r, err := getRecord(ctx, m.DB, tx, id)
		if err != nil {
			return err
		}
		list := slices.Clone(r.BlockedUsers)
		i := slices.Index(list, user)
		action := ActionBlockUser
		switch {
		case block && i >= 0, !block && i < 0:
			return nil
		case block:
			if len(list) >= MaxBlockedUsers {
				return fmt.Errorf("key %s blocks %d users already, at most %d allowed", id, len(list), MaxBlockedUsers)
			}
			list = append(list, user)
			slices.Sort(list)
		default:
			list = slices.Delete(list, i, i+1)
			action = ActionUnblockUser
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET blocked_users = ?, version = `+nextVersion+` WHERE id = ?`,
			mustJSON(list), id); err != nil {
			return fmt.Errorf("%s %s: %w", action, id, err)
		}
		return m.event(ctx, tx, now, actor, action, id, map[string]any{"user": user})
	})
}

// blockedSet is the lookup form of a key's blocked users.
func blockedSet(users []string) map[string]struct{} {
	if len(users) == 0 {
		return nil
	}
	out := make(map[string]struct{}, len(users))
	for _, u := range users {
		out[u] = struct{}{}
	}
	return out
}
