package preflight

import "testing"

func TestModelAllowlist(t *testing.T) {
	runTable(t, checkModelAllowlist, []tc{
		{"empty", env(Env{}), Warn, "models.allow is empty"},
		{"set", env(Env{ModelAllow: []string{"llama3.2:*", "warden-demo"}}), Pass, "llama3.2:*, warden-demo"},
	})
}
