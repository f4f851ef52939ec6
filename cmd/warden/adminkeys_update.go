package main

import (
	"context"

	"github.com/warden-llm/warden/safety/keys"
)

// Update changes a key's limits, weight or profile and refreshes the cache,
// so the scheduler sees a new weight at once.
func (a adminKeys) Update(ctx context.Context, actor, id string, ch keys.Change) error {
	return a.refresh(ctx, a.Manager.Update(ctx, actor, id, ch))
}
