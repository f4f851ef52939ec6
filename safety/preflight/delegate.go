package preflight

import (
	"context"
	"fmt"
	"slices"

	"github.com/warden-llm/warden/safety/keys"
)

// checkDelegateUserLimits warns about delegate keys whose end users have
// no limit of their own (none on the key, none in [limits.user]): behind a
// shared front end, one user can then spend the whole key's budget and
// queue share.
func checkDelegateUserLimits(ctx context.Context, e *Env) Result {
	ks, r := liveKeys(ctx, e)
	if r != nil {
		return *r
	}
	var open []keys.Key
	delegates := 0
	for _, k := range ks {
		if !slices.Contains(k.Scopes, keys.ScopeDelegate) {
			continue
		}
		delegates++
		if !hasUserLimit(k.Limits) && !hasUserLimit(e.UserLimits) {
			open = append(open, k)
		}
	}
	if len(open) > 0 {
		return warn(fmt.Sprintf("%d delegate keys without per-user limits (one end user can spend the key's whole quota): %s", len(open), ids(open)),
			"set per-user limits: `warden keys set-limits ID --user-tokens-per-day N --user-rpm N`, or defaults in [limits.user]")
	}
	if delegates == 0 {
		return pass("no delegate keys")
	}
	return pass(fmt.Sprintf("%d delegate keys hold their end users to per-user limits", delegates))
}

func hasUserLimit(l keys.Limits) bool {
	return l.UserRPM > 0 || l.UserTPM > 0 || l.UserTokensPerDay > 0 || l.UserTokensPerMonth > 0 || l.UserConcurrency > 0
}
