package keys

import "context"

// Update changes a key's limits, weight or profile and refreshes the cache,
// so the scheduler sees a new weight at once.
func (a Admin) Update(ctx context.Context, actor, id string, ch Change) error {
	return a.refresh(ctx, a.Manager.Update(ctx, actor, id, ch))
}
