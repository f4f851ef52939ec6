package preflight

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/warden-llm/warden/safety/keys"
)

// liveKeys lists the keys not revoked or expired.
func liveKeys(ctx context.Context, e *Env) ([]keys.Key, *Result) {
	if e.DB == nil {
		r := warn("no database to read the keys from", "")
		return nil, &r
	}
	all, err := (&keys.Manager{DB: e.DB}).List(ctx)
	if err != nil {
		r := fail("list keys: "+err.Error(), "")
		return nil, &r
	}
	now := e.now()
	var out []keys.Key
	for _, k := range all {
		if k.Revoked != nil || (k.Expires != nil && !now.Before(*k.Expires)) {
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

func ids(ks []keys.Key) string {
	s := make([]string, 0, len(ks))
	for _, k := range ks {
		s = append(s, k.ID+" ("+k.Name+")")
	}
	if len(s) > 10 {
		s = append(s[:10], fmt.Sprintf("and %d more", len(s)-10))
	}
	return strings.Join(s, ", ")
}

func checkRotation(ctx context.Context, e *Env) Result {
	if e.RotationMaxAge <= 0 {
		return warn("keys.rotation_max_age is 0: keys are never due for rotation", "set keys.rotation_max_age (e.g. \"2160h\")")
	}
	ks, r := liveKeys(ctx, e)
	if r != nil {
		return *r
	}
	now := e.now()
	var due []keys.Key
	for _, k := range ks {
		born := k.Created
		if k.Rotated != nil {
			born = *k.Rotated
		}
		if now.Sub(born) > e.RotationMaxAge {
			due = append(due, k)
		}
	}
	if len(due) > 0 {
		return fail(fmt.Sprintf("%d keys older than keys.rotation_max_age (%s): %s", len(due), e.RotationMaxAge, ids(due)),
			"rotate them: `warden keys rotate ID`")
	}
	return pass(fmt.Sprintf("%d keys rotated within %s", len(ks), e.RotationMaxAge))
}

func checkAdminExpiry(ctx context.Context, e *Env) Result {
	ks, r := liveKeys(ctx, e)
	if r != nil {
		return *r
	}
	var never []keys.Key
	for _, k := range ks {
		if slices.Contains(k.Scopes, keys.ScopeAdmin) && k.Expires == nil {
			never = append(never, k)
		}
	}
	if len(never) > 0 {
		return warn(fmt.Sprintf("%d admin keys never expire: %s", len(never), ids(never)),
			"create admin keys with --expires (e.g. 30d) and revoke the old ones")
	}
	return pass("every admin key expires")
}

func checkModelRestriction(ctx context.Context, e *Env) Result {
	ks, r := liveKeys(ctx, e)
	if r != nil {
		return *r
	}
	var open []keys.Key
	for _, k := range ks {
		// The probe key (`warden probe`) probes whichever model it is told to.
		if len(k.Models) == 0 && !(len(k.Scopes) == 1 && k.Scopes[0] == keys.ScopeAdmin) && !k.Probe {
			open = append(open, k)
		}
	}
	if len(open) > 0 {
		return warn(fmt.Sprintf("%d keys may use every model: %s", len(open), ids(open)),
			"restrict them with --models (e.g. `warden keys create --models 'llama3*'`)")
	}
	return pass("every key is limited to named models")
}

func checkUnused(ctx context.Context, e *Env) Result {
	ks, r := liveKeys(ctx, e)
	if r != nil {
		return *r
	}
	after := e.UnusedAfter
	if after <= 0 {
		after = 90 * 24 * time.Hour
	}
	now := e.now()
	var idle []keys.Key
	for _, k := range ks {
		last := k.Created
		if k.LastUsed != nil {
			last = *k.LastUsed
		}
		if now.Sub(last) > after {
			idle = append(idle, k)
		}
	}
	if len(idle) > 0 {
		return warn(fmt.Sprintf("%d keys unused for %d days: %s", len(idle), int(after.Hours()/24), ids(idle)),
			"revoke keys nobody uses: `warden keys revoke ID`")
	}
	return pass(fmt.Sprintf("every key used within %d days", int(after.Hours()/24)))
}
