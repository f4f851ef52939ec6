package main

import (
	"context"
	"time"

	"github.com/warden-llm/warden/safety/keys"
)

// adminKeys is the key store the admin API writes through: after each
// change it refreshes the server's key cache, so the change applies at
// once here (other servers and the CLI's changes arrive with the poll).
type adminKeys struct {
	*keys.Manager
	cache *keys.Cache
}

func (a adminKeys) refresh(ctx context.Context, err error) error {
	if err == nil {
		_ = a.cache.Refresh(context.WithoutCancel(ctx)) // on failure the poll catches up
	}
	return err
}

func (a adminKeys) Create(ctx context.Context, actor string, s keys.Spec) (keys.Key, string, error) {
	k, token, err := a.Manager.Create(ctx, actor, s)
	return k, token, a.refresh(ctx, err)
}

func (a adminKeys) Rotate(ctx context.Context, actor, id string, grace time.Duration) (keys.Key, string, error) {
	k, token, err := a.Manager.Rotate(ctx, actor, id, grace)
	return k, token, a.refresh(ctx, err)
}

func (a adminKeys) Revoke(ctx context.Context, actor, id string) error {
	return a.refresh(ctx, a.Manager.Revoke(ctx, actor, id))
}
