package preflight

import (
	"context"
	"errors"
	"testing"
)

func TestGuardModel(t *testing.T) {
	list := func(names ...string) func(context.Context) ([]string, error) {
		return func(context.Context) ([]string, error) { return names, nil }
	}
	down := func(context.Context) ([]string, error) { return nil, errors.New("connection refused") }
	runTable(t, checkGuardModel, []tc{
		{"no guard", env(Env{BackendModels: list()}), Pass, "no guard model configured"},
		{"present", env(Env{GuardModel: "llama-guard3:1b", BackendModels: list("warden-demo:latest", "llama-guard3:1b")}), Pass, `"llama-guard3:1b" is in the backend`},
		{"present, tag implied", env(Env{GuardModel: "warden-demo", BackendModels: list("warden-demo:latest")}), Pass, "is in the backend"},
		{"missing", env(Env{GuardModel: "llama-guard3:1b", BackendModels: list("warden-demo:latest", "llama-guard3:8b")}), Fail, `"llama-guard3:1b" is not in the backend`},
		{"no backend", env(Env{GuardModel: "llama-guard3:1b"}), Warn, "no backend found"},
		{"backend down", env(Env{GuardModel: "llama-guard3:1b", BackendModels: down}), Warn, "connection refused"},
	})
}
