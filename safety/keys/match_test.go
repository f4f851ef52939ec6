package keys

import "testing"

func TestAllowsModel(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		model    string
		want     bool
	}{
		{"empty allows all", nil, "anything:at-all", true},
		{"empty allows unparsable", nil, "not a name", true},
		{"bare = bare", []string{"llama3"}, "llama3", true},
		{"bare = latest", []string{"llama3"}, "llama3:latest", true},
		{"bare = fully qualified", []string{"llama3"}, "registry.ollama.ai/library/llama3:latest", true},
		{"case folds", []string{"Llama3"}, "LLAMA3:Latest", true},
		{"latest = bare", []string{"llama3:latest"}, "llama3", true},
		{"qualified = bare", []string{"registry.ollama.ai/library/llama3:latest"}, "llama3", true},
		{"other tag", []string{"llama3"}, "llama3:8b", false},
		{"longer name", []string{"llama3"}, "llama3.1", false},
		{"other namespace", []string{"llama3"}, "someone/llama3", false},
		{"one of several", []string{"mistral", "llama3:8b"}, "llama3:8b", true},
		{"glob prefix", []string{"llama3*"}, "llama3.1:8b", true},
		{"glob prefix bare", []string{"llama3*"}, "llama3", true},
		{"glob prefix miss", []string{"llama3*"}, "mistral", false},
		{"glob any tag", []string{"qwen2.5:*"}, "qwen2.5:0.5b", true},
		{"glob any tag bare", []string{"qwen2.5:*"}, "qwen2.5", true},
		{"glob any tag qualified", []string{"qwen2.5:*"}, "registry.ollama.ai/library/qwen2.5:7b", true},
		{"glob tag", []string{"*:latest"}, "llama3", true},
		{"glob star stops at slash", []string{"*:latest"}, "someone/model", false},
		{"glob canonical form", []string{"registry.ollama.ai/library/*"}, "llama3:8b", true},
		{"glob canonical form other ns", []string{"registry.ollama.ai/library/*"}, "someone/model", false},
		{"glob other host", []string{"hf.co/*/*"}, "hf.co/bartowski/model:q4_k_m", true},
		{"glob namespace", []string{"someone/*"}, "someone/model:7b", true},
		{"glob class", []string{"llama[23]"}, "llama3", false}, // short form is llama3:latest
		{"glob class tag", []string{"llama[23]:*"}, "llama2:7b", true},
		{"question mark", []string{"phi?"}, "phi3", false},
		{"question mark tag", []string{"phi?:latest"}, "phi3", true},
		{"unparsable refused", []string{"*"}, "bad name!", false},
		{"empty name refused", []string{"*:*"}, "", false},
		{"demo model", []string{"warden-demo"}, "warden-demo:latest", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			models, err := normalizePatterns(tt.patterns)
			if err != nil {
				t.Fatalf("normalizePatterns(%q): %v", tt.patterns, err)
			}
			p := newPrincipal(Key{Models: models})
			if got := p.AllowsModel(tt.model); got != tt.want {
				t.Errorf("patterns %q: AllowsModel(%q) = %v, want %v", tt.patterns, tt.model, got, tt.want)
			}
		})
	}
}

func TestAllowsModelStoredGarbageMatchesNothing(t *testing.T) {
	// A pattern this package would refuse, written by hand into the
	// database, must not make the key fall open to every model.
	p := newPrincipal(Key{Models: []string{"bad name!"}})
	if p.AllowsModel("llama3") {
		t.Error("an unparsable stored pattern allowed a model")
	}
}

func TestAllows(t *testing.T) {
	p := newPrincipal(Key{Scopes: []Scope{ScopeChat, ScopeAdmin}})
	tests := []struct {
		scope Scope
		want  bool
	}{
		{ScopeChat, true},
		{ScopeAdmin, true},
		{ScopeCompletions, false}, // admin implies nothing else
		{ScopeEmbeddings, false},
		{ScopeModels, false},
		{"", false},
		{"CHAT", false},
	}
	for _, tt := range tests {
		if got := p.Allows(tt.scope); got != tt.want {
			t.Errorf("Allows(%q) = %v, want %v", tt.scope, got, tt.want)
		}
	}
	var nilP *Principal
	if nilP.Allows(ScopeChat) || nilP.AllowsModel("llama3") {
		t.Error("a nil principal allowed something")
	}
}
