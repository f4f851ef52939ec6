package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/fs/ggml"

	"github.com/warden-llm/warden/runtime/ollama/ollamatest"
)

// demoSHA256 is the digest of the demo GGUF. It changes only when the
// model's shape, seed or metadata change on purpose.
const demoSHA256 = "1b0d81248f4311f309ff6c8dfb4f9911255b49bf9fa0c723dbe305388dc8c38f"

func TestDemoGGUFGolden(t *testing.T) {
	first, err := DemoGGUF()
	if err != nil {
		t.Fatal(err)
	}
	second, err := DemoGGUF()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("two writes of the demo GGUF differ")
	}
	sum := sha256.Sum256(first)
	if got := hex.EncodeToString(sum[:]); got != demoSHA256 {
		t.Errorf("demo GGUF sha256 = %s, want %s (%d bytes)", got, demoSHA256, len(first))
	}
}

func TestDemoGGUFDecodes(t *testing.T) {
	b, err := DemoGGUF()
	if err != nil {
		t.Fatal(err)
	}
	f, err := ggml.Decode(bytes.NewReader(b), -1)
	if err != nil {
		t.Fatalf("decode demo GGUF: %v", err)
	}
	kv := f.KV()

	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"architecture", kv.Architecture(), "llama"},
		{"block count", kv.BlockCount(), uint64(DemoBlockCount)},
		{"embedding length", kv.EmbeddingLength(), uint64(DemoEmbeddingLength)},
		{"context length", kv.ContextLength(), uint64(DemoContextLength)},
		{"vocab size", len(kv.Strings("tokenizer.ggml.tokens")), DemoVocabSize},
		{"token types", len(kv.Ints("tokenizer.ggml.token_type")), DemoVocabSize},
		{"tokenizer", kv.String("tokenizer.ggml.model"), "gpt2"},
		{"bos", kv.Uint("tokenizer.ggml.bos_token_id"), uint32(DemoBOS)},
		{"eos", kv.Uint("tokenizer.ggml.eos_token_id"), uint32(DemoEOS)},
		{"tensors", len(f.Tensors().Items()), 2 + 9*DemoBlockCount + 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if size := len(b); size < 400<<10 || size > 700<<10 {
		t.Errorf("demo GGUF is %d bytes, want about half a megabyte", size)
	}
}

func TestByteTokens(t *testing.T) {
	tokens := byteTokens()
	for _, tc := range []struct {
		name string
		b    byte
		want string
	}{
		{"letter", 'A', "A"},
		{"bang", '!', "!"},
		{"tilde", '~', "~"},
		{"nul", 0x00, "Ā"},
		{"newline", '\n', "Ċ"},
		{"space", ' ', "Ġ"},
		{"del", 0x7F, "ġ"},
		{"nbsp", 0xA0, "ł"},
		{"soft hyphen", 0xAD, "Ń"},
		{"latin-1", 0xE9, "é"},
		{"last", 0xFF, "ÿ"},
	} {
		if got := tokens[tc.b]; got != tc.want {
			t.Errorf("%s: token for byte %#x = %q, want %q", tc.name, tc.b, got, tc.want)
		}
	}

	seen := make(map[string]byte)
	for b, s := range tokens {
		if utf8.RuneCountInString(s) != 1 {
			t.Errorf("token for byte %#x = %q, want one rune", b, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("bytes %#x and %#x share token %q", prev, b, s)
		}
		seen[s] = byte(b)
	}
}

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   int
		want bool
	}{
		{"letter", 'a', true},
		{"space", ' ', true},
		{"tilde", '~', true},
		{"newline", '\n', true},
		{"tab", '\t', true},
		{"eos", DemoEOS, true},
		{"nul", 0, false},
		{"escape", 0x1B, false},
		{"carriage return", '\r', false},
		{"del", 0x7F, false},
		{"high byte", 0xC3, false},
		{"bos", DemoBOS, false},
	} {
		if got := allowed(tc.id); got != tc.want {
			t.Errorf("%s: allowed(%d) = %v, want %v", tc.name, tc.id, got, tc.want)
		}
	}
}

// TestDemoOnOllama imports the demo model into the real backend and runs a
// completion and an embedding through it.
func TestDemoOnOllama(t *testing.T) {
	c := ollamatest.Serve(t)
	ctx := t.Context()

	imported, err := EnsureDemo(ctx, c)
	if err != nil {
		t.Fatalf("first EnsureDemo: %v", err)
	}
	if !imported {
		t.Fatal("first EnsureDemo on an empty backend imported nothing")
	}
	imported, err = EnsureDemo(ctx, c)
	if err != nil {
		t.Fatalf("second EnsureDemo: %v", err)
	}
	if imported {
		t.Fatal("second EnsureDemo imported again")
	}

	generate := func() string {
		t.Helper()
		stream := false
		req := &api.GenerateRequest{
			Model:   DemoName,
			Prompt:  "Once upon a time",
			Stream:  &stream,
			Options: map[string]any{"temperature": 0, "seed": 1, "num_predict": 64},
		}
		var text string
		err := c.Generate(ctx, req, func(r api.GenerateResponse) error {
			text += r.Response
			if r.Done {
				t.Logf("%d tokens (%s) in %v: %q", r.EvalCount, r.DoneReason, r.EvalDuration, text)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("generate: %v", err)
		}
		return text
	}
	first, second := generate(), generate()
	if first == "" {
		t.Fatal("generate returned no text")
	}
	// encoding/json turns invalid UTF-8 into U+FFFD, so look for that too.
	if !utf8.ValidString(first) {
		t.Errorf("generated text is not valid UTF-8: %q", first)
	}
	for _, r := range first {
		if r == utf8.RuneError || unicode.IsControl(r) && r != '\n' && r != '\t' {
			t.Errorf("generated text holds %U: %q", r, first)
			break
		}
	}
	if first != second {
		t.Errorf("same request, different text:\n first: %q\nsecond: %q", first, second)
	}

	resp, err := c.Embed(ctx, &api.EmbedRequest{Model: DemoName, Input: "hello"})
	if err != nil {
		t.Fatalf("embed: %v", err)
	}
	if len(resp.Embeddings) != 1 || len(resp.Embeddings[0]) != DemoEmbeddingLength {
		t.Errorf("embed returned %d vectors, first of length %d; want 1 of length %d",
			len(resp.Embeddings), len(resp.Embeddings[0]), DemoEmbeddingLength)
	}
}
