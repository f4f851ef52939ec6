package models

import (
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// BenchmarkGuardCheck is the serving check every request that names a
// model pays: an allowed model with a database pin that matches.
func BenchmarkGuardCheck(b *testing.B) {
	db := storetest.Open(b)
	ctx := b.Context()
	allow, err := ParseAllowlist([]string{"llama3.2:*", "m"})
	if err != nil {
		b.Fatal(err)
	}
	d := strings.Repeat("1", 64)
	if _, err := db.ExecContext(ctx, `INSERT INTO model_pins (name, digest, at, actor) VALUES (?, ?, 0, 'os:t')`,
		"registry.ollama.ai/library/llama3.2:3b", d); err != nil {
		b.Fatal(err)
	}
	g := &Guard{Allow: allow, DB: db}
	m := Info{Name: "llama3.2:3b", Digest: d}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Check(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}
