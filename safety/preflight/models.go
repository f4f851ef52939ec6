package preflight

import (
	"context"
	"fmt"
	"strings"
)

// checkModelAllowlist warns when [models] allow is empty: every model the
// backend holds, or that anyone with the CLI pulls, is served.
func checkModelAllowlist(_ context.Context, e *Env) Result {
	if len(e.ModelAllow) == 0 {
		return warn("models.allow is empty: every model can be pulled, imported and served",
			`list the models you approve, e.g. [models] allow = ["llama3.2:*", "warden-demo"]`)
	}
	shown := e.ModelAllow
	if len(shown) > 5 {
		shown = append(shown[:5:5], fmt.Sprintf("and %d more", len(e.ModelAllow)-5))
	}
	return pass("models.allow admits only " + strings.Join(shown, ", "))
}
