package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/fs/ggml"
)

// demoSHA256 is the digest of the demo GGUF. It changes only when the
// model's shape, seed or metadata change on purpose.
const demoSHA256 = "1b0d81248f4311f309ff6c8dfb4f9911255b49bf9fa0c723dbe305388dc8c38f"

func TestDemoGGUFGolden(t *testing.T) {
	first, err := DemoGGUF()
	if err != nil {
		t.Fatal(err)
	}
	var second bytes.Buffer
	if err := WriteDemoGGUF(&second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second.Bytes()) {
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
	c := startOllama(t)
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

// startOllama runs `ollama serve` from bin/ollama in its own process group
// with a clean environment and empty model store, waits until it answers,
// and stops the whole group (runners included) when the test ends.
func startOllama(t *testing.T) *api.Client {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "bin", "ollama"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the Ollama backend is missing (%v): run `make backend` first", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	logPath := filepath.Join(dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child holds its own descriptor

	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{
		"HOME=" + dir,
		"OLLAMA_HOST=" + addr,
		"OLLAMA_MODELS=" + t.TempDir(),
		"OLLAMA_NO_CLOUD=1",
		"OLLAMA_CONTEXT_LENGTH=4096",
		"PATH=/usr/bin:/bin",
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ollama: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		// Runners outlive serve: take down whatever is left of the group.
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("kill ollama process group: %v", err)
		}
		<-exited
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("ollama serve log:\n%s", b)
			}
		}
	})

	c := api.NewClient(&url.URL{Scheme: "http", Host: addr}, &http.Client{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := c.Heartbeat(ctx)
		if err == nil {
			return c
		}
		select {
		case <-exited:
			t.Fatalf("ollama serve exited before answering: %v", waitErr)
		case <-ctx.Done():
			t.Fatalf("ollama serve did not answer on %s: %v", addr, err)
		case <-tick.C:
		}
	}
}
