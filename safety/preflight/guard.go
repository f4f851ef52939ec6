package preflight

import (
	"context"
	"fmt"
	"slices"

	"github.com/warden-llm/warden/models"
)

// checkGuardModel fails when the configured guard model ([safety.guard])
// is not in the backend: every guard call would fail and
// safety.guard.failure would decide every prompt.
func checkGuardModel(ctx context.Context, e *Env) Result {
	if e.GuardModel == "" {
		return pass("no guard model configured ([safety.guard] model is empty)")
	}
	if e.BackendModels == nil {
		return warn(fmt.Sprintf("cannot tell whether the guard model %q is in the backend: no backend found", e.GuardModel),
			"start `warden serve` with this data dir (or set runtime.ollama_url) and rerun")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*e.timeout())
	defer cancel()
	names, err := e.BackendModels(ctx)
	if err != nil {
		return warn(fmt.Sprintf("cannot list the backend's models to find the guard model %q: %v", e.GuardModel, err),
			"check that the backend is running and rerun")
	}
	canon := func(n string) string {
		if c, ok := models.Canonical(n); ok {
			return c
		}
		return n
	}
	want := canon(e.GuardModel)
	if slices.ContainsFunc(names, func(n string) bool { return canon(n) == want }) {
		return pass(fmt.Sprintf("the guard model %q is in the backend", e.GuardModel))
	}
	return fail(fmt.Sprintf("the guard model %q is not in the backend: every guard call fails and safety.guard.failure decides every text", e.GuardModel),
		fmt.Sprintf("warden models pull %s (and allow it in models.allow), or fix safety.guard.model", e.GuardModel))
}
