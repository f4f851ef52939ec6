package keys

import (
	"context"
	"time"
)

// Admin is the key store an admin API writes through: after each change
// that succeeds it refreshes Cache, so the change applies at once in this
// process (other servers' and the CLI's changes arrive with the cache's
// poll). A failed refresh is not the write's error: the poll catches up.
type Admin struct {
	*Manager
	Cache *Cache
}

func (a Admin) refresh(ctx context.Context, err error) error {
	if err == nil {
		_ = a.Cache.Refresh(context.WithoutCancel(ctx)) // on failure the poll catches up
	}
	return err
}

// Create makes a key (see Manager.Create) and refreshes the cache.
func (a Admin) Create(ctx context.Context, actor string, s Spec) (Key, string, error) {
	k, token, err := a.Manager.Create(ctx, actor, s)
	return k, token, a.refresh(ctx, err)
}

// Rotate replaces a key's secret (see Manager.Rotate) and refreshes the
// cache.
func (a Admin) Rotate(ctx context.Context, actor, id string, grace time.Duration) (Key, string, error) {
	k, token, err := a.Manager.Rotate(ctx, actor, id, grace)
	return k, token, a.refresh(ctx, err)
}

// Revoke revokes a key (see Manager.Revoke) and refreshes the cache.
func (a Admin) Revoke(ctx context.Context, actor, id string) error {
	return a.refresh(ctx, a.Manager.Revoke(ctx, actor, id))
}

// Update changes a key's limits, weight or profile and refreshes the cache,
// so the scheduler sees a new weight at once.
func (a Admin) Update(ctx context.Context, actor, id string, ch Change) error {
	return a.refresh(ctx, a.Manager.Update(ctx, actor, id, ch))
}

// BlockUser blocks an end user under a key (see Manager.BlockUser) and
// refreshes the cache.
func (a Admin) BlockUser(ctx context.Context, actor, id, user string) error {
	return a.refresh(ctx, a.Manager.BlockUser(ctx, actor, id, user))
}

// UnblockUser unblocks an end user under a key (see Manager.UnblockUser)
// and refreshes the cache.
func (a Admin) UnblockUser(ctx context.Context, actor, id, user string) error {
	return a.refresh(ctx, a.Manager.UnblockUser(ctx, actor, id, user))
}
