package keys

import (
	"context"
	"time"
)

// Admin is the key store the admin API writes through: after each
// change it refreshes the server's key cache, so the change applies at
// once here (other servers and the CLI's changes arrive with the poll).
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

func (a Admin) Create(ctx context.Context, actor string, s Spec) (Key, string, error) {
	k, token, err := a.Manager.Create(ctx, actor, s)
	return k, token, a.refresh(ctx, err)
}

func (a Admin) Rotate(ctx context.Context, actor, id string, grace time.Duration) (Key, string, error) {
	k, token, err := a.Manager.Rotate(ctx, actor, id, grace)
	return k, token, a.refresh(ctx, err)
}

func (a Admin) Revoke(ctx context.Context, actor, id string) error {
	return a.refresh(ctx, a.Manager.Revoke(ctx, actor, id))
}

func (a Admin) SetLimits(ctx context.Context, actor, id string, l Limits) error {
	return a.refresh(ctx, a.Manager.SetLimits(ctx, actor, id, l))
}
